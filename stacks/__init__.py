"""CDK stacks and constructs of the field-photo labeling pipeline."""
