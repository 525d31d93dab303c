"""Several `kinema train` runs under one torchrun launch (two gloo ranks), for test_scale_train.py: starting
the ranks once costs more than the runs. Each run is the CLI exactly as a user calls it; the process group
is created here first, so `train` uses it and leaves it open for the next run.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/scale_ranks.py DATA VAE ROOT

ROOT/plain and ROOT/checkpointing train 3 steps from scratch; ROOT/legacy resumes the legacy
train_state.pt the test left there; ROOT/killed saves step 1, then rank 1 is SIGKILLed in the middle of
saving step 2 (after writing its shards), which ends the launch: the test checks what is left on disk.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from kinema.cli import app


def kinema_train(data: str, vae: str, out: Path, *extra: str) -> None:
    args = ["train", "--data", data, "--vae", vae, "--out", str(out), "--preset", "debug", "--batch", "4"]
    args += ["--lr", "1e-3", "--warmup", "1", *extra]
    code = app(args, standalone_mode=False)
    if code:
        raise SystemExit(f"kinema {' '.join(args)} exited with {code}")


def main() -> None:
    data, vae, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    dist.init_process_group("gloo")
    kinema_train(data, vae, root / "plain", "--max-steps", "3", "--save-every", "3")
    kinema_train(data, vae, root / "checkpointing", "--max-steps", "3", "--save-every", "3", "--checkpointing")
    kinema_train(data, vae, root / "legacy", "--max-steps", "3", "--save-every", "3", "--checkpointing")
    if dist.get_rank() == 0:
        (root / "before_kill").write_text("ok\n")
    real_save = dcp.save

    def save_then_die(state, checkpoint_id, **kw):  # rank 1 dies with its step-2 shards written
        real_save(state, checkpoint_id=checkpoint_id, **kw)
        if dist.get_rank() == 1 and "step_00000002" in str(checkpoint_id):
            os.kill(os.getpid(), signal.SIGKILL)

    dcp.save = save_then_die
    kinema_train(data, vae, root / "killed", "--max-steps", "2", "--save-every", "1")


if __name__ == "__main__":
    main()
