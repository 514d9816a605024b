"""modelpower's harness: the CLI and everything it runs, one subpackage per concern.

- cli/: the `modelpower` commands (parse flags, call a benchmark, print)
- vision/: the vision benchmark (runner, LoadGen, torchrun, images, ONNX files)
- llm/: the LLM benchmark (engines, decode loop, prompts)
- backends/: the vision inference backends (torch eager, torch.compile, ONNX Runtime)
- verdicts/: claims, reports, the CI gate, cost
- results/: the result schema and one run's result file from first write to last
- measure/: measurement primitives (timing, statistics, energy, memory, FLOPs, metrics, peak probes)
- machine/: facts about this machine and others (devices, the spec table, provenance, published figures)
- errors.py: one-line user errors and safe text; inputs.py: checks of flag values and untrusted input files
Each subpackage's docstring says what it may import; tests/test_layers.py enforces it.
"""

from pathlib import Path

__version__ = "0.1.0"
DATA_DIR = Path(__file__).parent / "data"  # the spec table, published figures, report templates
