"""Scorers and benchmark loaders for the paper's evaluations.

- `math_answers`: final-answer extraction and math-verify grading (math);
- `mcq`: answer-letter extraction for multiple choice (medical);
- `figfont`: exact match and Jaro-Winkler similarity (figfont);
- `gsm_symbolic`: numeric final answers;
- `metrics`: mean accuracy over samples, pass@k, per-source means;
- `benchmarks`: loaders for the benchmark files;
- `tasks`: prompts and scoring per task, used by `bnll eval`.
"""
