"""Evaluation tools: selectors at equal budgets, official caption scores, RESULTS.md table reproduction, metrics."""
