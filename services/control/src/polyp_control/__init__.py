"""The control service: training runs as Ray jobs, schedules, model watches, alerts over Redis and SSE."""
