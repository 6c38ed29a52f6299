"""Ground floor: what notebooks use to read and show results (numpy, scipy, matplotlib; no torch).

  stats      bootstrap and t intervals, paired comparisons, smallest detectable effects, AUCs, trends
  textstats  word counts and distinctive words (log-odds with an informative Dirichlet prior)
  plotting   `save_figure` and the shared figure conventions (party colours, neutral band)
"""
