"""Common corruptions, mCE, occlusion, affine and in-between-class robustness (issues 4, 5)."""
