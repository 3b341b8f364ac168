"""asr-run: run a recipe's stages, configured by Hydra (conf/ at the repository root).

    asr-run recipe=synth                          every stage of the recipe
    asr-run recipe=synth stage=train              one stage
    asr-run recipe=synth 'stages=[train,decode]'  some stages
    asr-run recipe=synth task=st model=transformer_s trainer.max_epochs=50 exp_dir=exp/big
    torchrun --nproc_per_node 2 -m asr.cli.run recipe=synth stage=train trainer.device=cpu
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
logger = logging.getLogger("asr")


def run(cfg) -> None:  # noqa: ANN001 (a DictConfig; Hydra is imported lazily)
    """Turn the Hydra config into an ExperimentConfig, save it resolved, and run the stages."""
    import yaml
    from omegaconf import OmegaConf

    from asr.fileio import atomic_write_text
    from asr.recipe.config import ExperimentConfig
    from asr.recipe.stages import run_stages

    values = OmegaConf.to_container(cfg, resolve=True)
    config = ExperimentConfig.from_hydra(values)
    exp_dir = Path(config.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(exp_dir / config_file_name(exp_dir, config.stages),
                      yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    run_stages(config)


def config_file_name(exp_dir: Path, stages: tuple[str, ...]) -> str:
    """config.yaml for a run that trains (or the first run); config.<stages>.yaml for a later run that
    does not (a decode with other options, an LM), so it does not hide how the model was trained."""
    if "train" in stages or not (exp_dir / "config.yaml").exists():
        return "config.yaml"
    return f"config.{'_'.join(stages)}.yaml"


def main() -> None:
    import hydra

    if not CONF_DIR.is_dir():
        sys.exit(f"asr-run: the config folder {CONF_DIR} is missing (asr-run needs an editable install: "
                 "pip install -e . in the repository)")

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _main(cfg) -> None:  # noqa: ANN001
        try:
            run(cfg)
        except (ValueError, FileNotFoundError) as error:  # configuration and data errors: no traceback
            logger.error("%s", error)
            sys.exit(1)

    _main()


if __name__ == "__main__":
    main()
