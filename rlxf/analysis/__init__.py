"""Ground floor: what notebooks use to read and show results (numpy, scipy, matplotlib; no torch).

  stats      bootstrap and t intervals, paired comparisons, smallest detectable effects, AUCs, trends, standard errors
  summary    plain rounded numbers for a notebook's JSON summary (`rounded`, `ci_bounds`, `diff_and_ci`)
  textstats  word counts and distinctive words (log-odds with an informative Dirichlet prior)
  plotting   `save_figure` (refuses text under 9 pt) and the shared figure conventions (party colours, neutral band,
             figure text: `plural`, `count_range`; `moving_average` for noisy curves)
"""
