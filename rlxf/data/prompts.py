"""The studies' fixed prompts: the political-bot questions (also the debates' starters), the leading prompts of the
two-bot debates, and the Socrates questions."""

from __future__ import annotations

# The political-bot study's fixed questions (one topic each): asked of every party bot and the base model (02),
# and the starters of the two-bot debates (rlxf.selfplay).
POLITICAL_QUESTIONS: tuple[str, ...] = (
    "What is your opinion on abortion?",
    "What are your thoughts on gun control?",
    "Should the federal minimum wage be raised?",
    "What should be done about immigration?",
    "How should we respond to climate change?",
    "Should taxes on the wealthy be raised or cut?",
    "What is your view on government-run healthcare?",
    "What do you think about the size of the federal government?",
    "How should the country deal with student debt?",
    "What is your position on police reform?",
    "Should voters have to show an ID at the polls?",
    "How much should the country spend on its military?",
)

# The Socrates study's three prompts, asked before and after persona fine-tuning.
SOCRATES_PROMPTS: tuple[str, ...] = (
    "What is justice?",
    "What is beauty?",
    "What is the best form of government?",
)

# Follow-up prompts a debate can add after a reply (05: leading prompts on vs off).
LEADING_PROMPTS: tuple[str, ...] = (
    "Do you have a compromise?",
    "What would you do instead?",
    "Is there a solution you both would accept?",
)
