"""Running the notebooks: the papermill batch runner, its records, the README's measured section, the notebooks' setup.

  runner    `python -m rlxf.run --profile {smoke,demo,gpu} [--jobs N] [--publish]`: profiles, parameter checks, DEPENDS
  params    profiles and -p overrides read as YAML 1.2, their types checked
  runlog    the runner's records: Profile, NotebookRun, run_summary.json under a lock, the headline, publish
  report    `python -m rlxf.run.report --profile demo --write-readme`: the README's measured section from results/
  notebook  `setup(seed=, data_dir=, artifacts_dir=)`: the notebooks' one setup call
"""

from rlxf.run.runner import DEPENDS, discover_notebooks, load_profile, main

__all__ = ["DEPENDS", "discover_notebooks", "load_profile", "main"]
