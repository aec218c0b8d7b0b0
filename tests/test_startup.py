"""Start-up: importing a side's training module loads its framework, not the tools used only at a run's end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import SIDES

# used only at the end of a run (metrics, plots), for a real data file, or with --tensorboard
LATE = ["matplotlib", "seaborn", "pandas", "sklearn", "tensorboard", "torch.utils.tensorboard"]
FRAMEWORK = {"plain_pytorch": "torch", "lightning_impl": "lightning"}


def loaded_after(module: str) -> set[str]:
    """Which of LATE a fresh interpreter has in sys.modules after `import module`."""
    code = f"import json, sys; import {module}; print(json.dumps([m for m in {LATE!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_train_module_imports_only_what_its_framework_does(side: str) -> None:
    # Lightning itself imports matplotlib when it is installed: only what our code adds counts
    extra = loaded_after(f"{side}.train") - loaded_after(FRAMEWORK[side])
    assert not extra, f"importing {side}.train loads {sorted(extra)} at start-up"
