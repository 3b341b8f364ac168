"""Training: typed configs, the Trainer loop, optimiser/schedules, checkpoints and averaging.

    from asr.train import OptimConfig, Trainer, TrainerConfig
    result = Trainer(model, train_set, train_sampler, valid_set, TrainerConfig(max_epochs=50),
                     OptimConfig(lr=1e-3, warmup_steps=5000), exp_dir="exp/run1", tokenizer=tokenizer).fit()
"""

from asr.train.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    average_experiment,
    load_checkpoint,
    save_checkpoint,
    select_checkpoints,
)
from asr.train.config import OptimConfig, TrainerConfig
from asr.train.optim import build_optimizer, build_scheduler
from asr.train.trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "CheckpointManager",
    "NonFiniteLossError",
    "OptimConfig",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "average_checkpoints",
    "average_experiment",
    "build_optimizer",
    "build_scheduler",
    "load_checkpoint",
    "save_checkpoint",
    "select_checkpoints",
]
