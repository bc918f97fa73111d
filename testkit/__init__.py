"""What the tests and the benchmarks share: the reference network and random official-layout weights, synthetic
pictures and video clips, the shared data folder, and the ComfyUI checkout.

Imported from the repository root, where pytest (`pythonpath` in pyproject.toml) and `python -m bench.NAME` both
start; nothing edits `sys.path` to reach it. Not part of the pack: ComfyUI never imports it.
"""
