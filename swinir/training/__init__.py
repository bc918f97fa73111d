"""Training and evaluation: the trainer of the pack's default models, the degradations it trains on, the
MATLAB-style bicubic resize of the SR test sets, the metrics and the scoring of models on test sets.

Nothing on the inference path (the engine, the nodes, `python -m swinir restore`) imports this package.
"""
