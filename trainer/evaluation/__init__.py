"""Evaluation tools: selectors at equal budgets, official caption scores, README table reproduction, metrics."""
