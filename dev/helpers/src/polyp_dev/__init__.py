"""Development helpers: local servers for tests, benchmarks and `make up`. Never installed in an image.

- ``net``: free loopback ports, waiting until a server answers;
- ``local_ray``: a Ray head with the job-submission API on loopback;
- ``local_triton``: nvidia-pytriton's tritonserver over a mirrored model repository;
- ``up``: `make up`, the whole loop on embedded defaults.
"""
