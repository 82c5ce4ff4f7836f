"""Everything that speaks SageMaker Ground Truth lives in this package (the labeling-backend seam's GT side)."""
