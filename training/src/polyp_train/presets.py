"""Named training recipes: `polyp-train train --preset cpu-fast` (explicit options still win).

cpu-fast is the most Dice per CPU-minute measured on a 2-core VM without a GPU (bench/train_real.py):
channels_last + bfloat16 autocast make a U-Net/ResNet-18 training step 2.4x faster than fp32 NCHW
on a CPU with AVX-512 BF16 / AMX (31.3 vs 13.1 images/s at 160 px, batch 8), one Ray Train worker
on both cores (two DDP workers on two cores only add communication), 192 px letterboxed input,
the learning rate on a cosine over a 60-minute wall-time budget. Precision `auto` is bf16 on such a CPU
and fp32 elsewhere. The training contract's defaults (polyp_core.job, what `make up` and the API use)
are this recipe without the budget: ten epochs. gpu: the same recipe on one CUDA GPU, bigger input and batch.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "cpu-fast": {
        "arch": "Unet",
        "encoder": "resnet18",
        "size": 192,
        "batch_size": 8,
        "lr": 2e-3,
        "epochs": 500,
        "workers": 1,
        "precision": "auto",
        "channels_last": True,
        "time_budget_min": 60.0,
    },
    "gpu": {
        "arch": "Unet",
        "encoder": "resnet34",
        "size": 352,
        "batch_size": 16,
        "lr": 1e-3,
        "epochs": 100,
        "workers": 1,
        "precision": "bf16",
        "channels_last": True,
        "device": "cuda",
    },
}


def preset_in(argv: list[str]) -> str | None:
    """The --preset NAME (or --preset=NAME) given on a command line, before it is parsed."""
    for index, arg in enumerate(argv):
        if arg == "--preset" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--preset="):
            return arg.split("=", 1)[1]
    return None
