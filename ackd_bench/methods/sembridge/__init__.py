"""SemBridge (the paper's method): Student-Friendly Matching (SSM + DynM) and Semantic-aware
Knowledge Alignment (Planner + CORAL), a plug-in on top of any baseline distillation loss."""
