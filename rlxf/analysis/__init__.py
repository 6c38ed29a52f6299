"""Ground floor: what notebooks use to read and show results (numpy, scipy, matplotlib; no torch).

  stats      bootstrap and t intervals, paired comparisons, smallest detectable effects, AUCs, trends, standard errors
  summary    plain rounded numbers for a notebook's JSON summary (`rounded`, `ci_bounds`, `diff_and_ci`)
  textstats  word counts and distinctive words (log-odds with an informative Dirichlet prior)
  plotting   `save_figure` and the shared figure conventions (party colours, neutral band)
"""
