"""Adversarial evaluation: FGSM, PGD, DeepFool, CW, DDN, transfer, with sanity checks (issue 3)."""
