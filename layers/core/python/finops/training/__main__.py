"""``python -m finops.training``: what the Batch job's container runs.

Exit codes (the workflow's contract): 0 = all steps done, or stopped at the time box / after a Spot notice
that was not followed by termination, with a checkpoint saved (``progress.json`` says which); 143 = SIGTERM,
after a checkpoint; 1 = a real training failure (bad configuration, non-finite loss, an exception).
"""

from __future__ import annotations

import logging
import signal
import sys

from finops.training.checkpoint import CheckpointStore, S3Location
from finops.training.interruption import SpotNoticePoller, StopFlag, StopReason, install_sigterm
from finops.training.job import load_builder
from finops.training.loop import LoopConfig, train
from finops.training.settings import TrainingSettings

log = logging.getLogger("finops.training")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SIGTERM = 143


def _wait_for_reclaim(seconds: float) -> int:
    """After the Spot notice's checkpoint: let AWS reclaim the instance (its SIGTERM -> 143), so Batch reports
    the host's termination, which the workflow counts as a preemption. Not reclaimed in time -> exit 0."""
    terminated = StopFlag()
    previous = install_sigterm(terminated)
    try:
        if terminated.wait(seconds):
            return EXIT_SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.warning("spot notice given but the instance was not reclaimed within %.0f s; exiting", seconds)
    return EXIT_OK


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = StopFlag()
    previous = install_sigterm(stop)
    try:
        settings = TrainingSettings()  # type: ignore[call-arg]
        logging.getLogger().setLevel(settings.log_level.upper())
        store = CheckpointStore(S3Location.parse(settings.checkpoint_uri), keep=settings.keep_checkpoints)
        config = LoopConfig(total_steps=settings.total_steps, checkpoint_every=settings.checkpoint_every,
                            time_box_seconds=settings.time_box_seconds, seed=settings.seed, run_id=settings.run_id,
                            torch_threads=settings.torch_threads)
        builder = load_builder(settings.training_job)
        poller = (SpotNoticePoller(stop, endpoint=settings.imds_endpoint,
                                   interval_seconds=settings.imds_poll_seconds).start()
                  if settings.imds_endpoint else None)
        try:
            result = train(builder, store, config, stop=stop)
        finally:
            if poller is not None:
                poller.stop()
    except Exception:
        log.exception("training failed")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)

    if result.reason is StopReason.SIGTERM:
        return EXIT_SIGTERM
    if result.reason is StopReason.SPOT_NOTICE:
        return _wait_for_reclaim(settings.reclaim_wait_seconds)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
