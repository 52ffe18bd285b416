"""The accuracy corpus of issue 11: corpus.py (models, weights, inputs), train.py (trains and
checks the trained models), run.py (the error table; `make accuracy`), trained_like.py (the
earlier trained-like models, also run by benchmarks/accuracy.py)."""
