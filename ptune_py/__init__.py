"""ptune's Python: the references the engine is checked against, the
checkpoint generator, and the PyTorch / ONNX Runtime peers of the benchmarks.

One package, so modules import each other by name (``from ptune_py import
torch_t5``) and nothing edits ``sys.path``.  Run a module from the
repository root: ``python3 -m ptune_py.gen_checkpoint OUT --preset tiny-relu``
(modules that import no sibling also run as ``ptune_py/NAME.py``).

  t5_reference.py      independent float64 T5 (forward, loss, prompt gradient): the cross-check
  t5x_adafactor.py     float64 re-implementation of T5X's Adafactor: the cross-check
  compare.py           compares the engine's numbers with a reference's, within tolerances
  gen_checkpoint.py    Hugging Face T5 checkpoints with seeded random weights
  torch_t5.py          an efficient float32 PyTorch T5 (the benchmarks' peer)
  pytorch_bench.py     the speed benchmark's PyTorch contender
  pytorch_prompt_tuning.py  the same prompt tuning in PyTorch (learning curves)
  export_onnx.py       the benchmark's graph in ONNX, for ONNX Runtime
"""
