"""Training: one engine loop for teachers, matchers and students; metrics; checkpoints; caches."""
