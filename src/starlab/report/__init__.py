"""Pictures and reports: genome diagrams now; Pareto fronts and the HTML report build on them."""
