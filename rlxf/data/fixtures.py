"""Small fixture corpora in the same layout and formats as ../shared/data, for tests and machines without the data.

Everything here is deterministic (no randomness, fixed gzip mtime) so the files' sha256s are stable. The Plato
lines are Jowett's public-domain translation (openings of Crito, Euthyphro, Meno; the Republic's narrated opening);
the tweets, MONA conditions, reviews and conversations are written for the fixtures and attributed to no one real.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pandas as pd

FIXTURE_MARKER = "FIXTURES.md"

# --- political ------------------------------------------------------------------------------------------------

DEMOCRAT_TWEETS = {
    "RepMariaDelgado": [
        "Touching &amp; productive conversation with student survivors of gun violence. We're listening. "
        "Congress must pass universal background checks now. #NeverAgain https://t.co/gC1Ot4A6qe",
        "Proud to cosponsor the bill to protect people with pre-existing conditions. Health care is a right, "
        "not a privilege.",
        "Thank you @FloridaNurses for visiting my office today! Your work keeps our families healthy 💙",
        "Puerto Rico still needs a long-term recovery plan. FEMA must do better before #HurricaneSeason2018 "
        "begins.",
        "Our DREAMers are Americans in every way but on paper. It's time for a clean Dream Act vote.",
        "Climate change is not a debate, it's a fact. Rising seas are already flooding our streets at high tide. "
        "https://t.co/Xy12AbCd9k",
        "Hosting a town hall on Saturday at the public library.\nBring your questions on Medicare, Social "
        "Security and the VA!",
        "Voting rights are under attack across the country. We must restore the Voting Rights Act.",
        "Teachers deserve a raise, not more paperwork. I stand with our public school educators.",
        "Prescription drug prices are out of control. Let Medicare negotiate lower prices for seniors.",
    ],
    "RepJamesOkafor": [
        "The GOP tax scam gave 83% of its benefits to the top 1%. Working families got crumbs.",
        "Families belong together. Separating children from their parents at the border is cruel and un-American.",
        "Great to join @SEIU members on the picket line for a $15 minimum wage ✊",
        "Net neutrality keeps the internet open for small businesses and students. The Senate voted to save it; "
        "now the House must act.",
        "Every child deserves clean water. Flint is not fixed and we will not forget.",
        "Today I voted against a budget that cuts SNAP for millions of hungry families.",
        "Planned Parenthood provides cancer screenings and birth control to millions of women. Hands off our "
        "health care.",
        "We need a Green New Deal that creates union jobs building clean energy 🌎",
        "The special counsel's investigation must be allowed to continue without interference from the White House.",
        "Equal pay for equal work. Women still earn 80 cents for every dollar paid to men. #EqualPayDay",
    ],
    "RepLindaHsu": [
        "Gun violence is a public health crisis. Fund the CDC research we need to save lives.",
        "Student debt is crushing a generation. I'm fighting to make public college tuition-free.",
        "Proud to stand with our LGBTQ neighbors. Pass the Equality Act! 🏳️‍🌈",
        "Russia attacked our elections and the administration still has no plan to protect 2018.",
        "Medicaid expansion has covered thousands of our neighbors. Republicans want to take it away.",
        "Thanks to everyone who came to our immigration workshop with @ACLU last night!",
        "Affordable child care should not cost more than rent. Our families need relief.",
        "Trump's tariffs are hurting farmers and raising prices at the grocery store.",
        "Honored to meet the Girl Scouts of Troop 412 at the Capitol this morning!",
    ],
    "RepTomKowalski": [
        "Social Security is an earned benefit. I will never vote to cut it or privatize it.",
        "Our veterans wait too long for care. Fully fund the VA and hire more doctors.",
        "Labor unions built the middle class. Protect workers' right to organize.",
        "The EPA must enforce the Clean Air Act, not gut it for polluters.",
        "Wall Street does not need another tax break. Invest in roads, bridges and broadband instead.",
        "Honored to speak at the NAACP Freedom Fund dinner tonight. The fight for civil rights continues.",
        "Dark money is drowning out the voices of voters. Overturn Citizens United.",
        "Affordable housing is in crisis in our city. I'm introducing a bill to expand housing vouchers.",
        "A $1.5 trillion tax cut for corporations, paid for by cutting Medicare? Not on my watch.",
    ],
}
REPUBLICAN_TWEETS = {
    "RepBillHarlan": [
        "Thanks to tax reform, the typical family of four in our district keeps $2,000 more of their own money "
        "this year.",
        "Border security is national security. We must build the wall and end catch and release.",
        "Unemployment is at its lowest level in nearly 20 years. Our economy is booming 🇺🇸",
        "I will always defend the Second Amendment rights of law-abiding citizens.",
        "Obamacare's individual mandate is gone. Families should not be fined for their health care choices.",
        "Great meeting with @NFIB small business owners. Cutting red tape is creating jobs in our state.",
        "@SpeakerRyan https://t.co/Qv7pLm2Rr0",
    ],
    "RepSusanPrice": [
        "Every life is precious. Proud to vote for the Pain-Capable Unborn Child Protection Act.",
        "Our military needs a strong defense budget to rebuild readiness. Peace through strength.",
        "Sanctuary cities put dangerous criminals back on our streets. Enforce our immigration laws.",
        "The national debt is over $21 trillion. Washington must stop spending money it doesn't have.",
        "Congratulations to Judge Kavanaugh on his nomination to the Supreme Court, a constitutionalist who will "
        "uphold the rule of law.",
        "School choice empowers parents. Every child deserves a chance at a great education.",
    ],
    "RepDaleCrocker": [
        "American energy independence means jobs. Approve the pipeline and open federal lands to drilling.",
        "Farmers need the farm bill passed with work requirements for able-bodied adults on SNAP.",
        "The Dodd-Frank rollback frees community banks to lend to Main Street again.",
        "Religious liberty is our first freedom. The government should not force bakers to violate their faith.",
        "Welcome home to the soldiers of the 82nd Airborne! Thank you for your service 💪",
        "MS-13 gang members are terrorizing our communities. ICE agents deserve our thanks, not abolition.",
        "Proud to support President Trump's plan to rebuild our infrastructure without raising taxes.",
    ],
}


def tweet_rows() -> list[tuple[str, str, str]]:
    """60 rows (40 Democrat, 20 Republican), with one exact duplicate and one duplicate that differs by its URL."""
    rows = [(handle, "Democrat", text) for handle, texts in DEMOCRAT_TWEETS.items() for text in texts]
    rows.append(rows[0])
    first_url = rows[5]
    rows.append((first_url[0], "Democrat", first_url[2].replace("Xy12AbCd9k", "Zq98WvUt3s")))
    rows += [(handle, "Republican", text) for handle, texts in REPUBLICAN_TWEETS.items() for text in texts]
    return rows


# --- plato ----------------------------------------------------------------------------------------------------

GUTENBERG_HEADER = """The Project Gutenberg eBook of {title}

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever. You may copy it, give it away or re-use it under the terms
of the Project Gutenberg License included with this ebook or online
at www.gutenberg.org. If you are not located in the United States,
you will have to check the laws of the country where you are located
before using this eBook.

Title: {title}

Author: Plato

Translator: Benjamin Jowett

Release date: {release} [eBook #{ebook}]

Language: English

Credits: This etext was prepared by Sue Asscher


*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***




{upper_short}

by Plato

Translated by Benjamin Jowett


"""
GUTENBERG_FOOTER = """


*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***




Updated editions will replace the previous one--the old editions will
be renamed.

Creating the works from print editions not protected by U.S. copyright
law means that no one owns a United States copyright in these works,
so the Foundation (and you!) can copy and distribute it in the United
States without permission and without paying copyright royalties.
"""

CRITO_INTRO = """INTRODUCTION.

The Crito seems intended to exhibit the character of Socrates in one light
only, not as the philosopher, fulfilling a divine mission and trusting in
the will of heaven, but simply as the good citizen, who having been
unjustly condemned is willing to give up his life in obedience to the laws
of the state...

The days of Socrates are drawing to a close; the fatal ship has been seen
off Sunium, as he is informed by his aged friend and contemporary Crito,
who visits him before the dawn has broken; he himself has been warned in a
dream that on the third day he must depart.


CRITO


PERSONS OF THE DIALOGUE:  Socrates, Crito.

SCENE:  The Prison of Socrates.


"""
CRITO_TURNS = """SOCRATES:  Why have you come at this hour, Crito? it must be quite early.

CRITO:  Yes, certainly.

SOCRATES:  What is the exact time?

CRITO:  The dawn is breaking.

SOCRATES:  I wonder that the keeper of the prison would let you in.

CRITO:  He knows me because I often come, Socrates; moreover.  I have done
him a kindness.

SOCRATES:  And are you only just arrived?

CRITO:  No, I came some time ago.

SOCRATES:  Then why did you sit and say nothing, instead of at once
awakening me?

CRITO:  I should not have liked myself, Socrates, to be in such great
trouble and unrest as you are--indeed I should not:  I have been watching
with amazement your peaceful slumbers; and for that reason I did not awake
you, because I wished to minimize the pain.  I have always thought you to
be of a happy disposition; but never did I see anything like the easy,
tranquil manner in which you bear this calamity.

SOCRATES:  Why, Crito, when a man has reached my age he ought not to be
repining at the approach of death.

CRITO:  And yet other old men find themselves in similar misfortunes, and
age does not prevent them from repining.

SOCRATES:  That is true.  But you have not told me why you come at this
early hour.

CRITO:  I come to bring you a message which is sad and painful; not, as I
believe, to yourself, but to all of us who are your friends, and saddest of
all to me.

SOCRATES:  What?  Has the ship come from Delos, on the arrival of which I
am to die?

CRITO:  No, the ship has not actually arrived, but she will probably be
here to-day, as persons who have come from Sunium tell me that they have
left her there; and therefore to-morrow, Socrates, will be the last day of
your life.

SOCRATES:  Very well, Crito; if such is the will of God, I am willing; but
my belief is that there will be a delay of a day.

CRITO:  Why do you think so?

SOCRATES:  I will tell you.  I am to die on the day after the arrival of
the ship?

CRITO:  Yes; that is what the authorities say.

SOCRATES:  But I do not think that the ship will be here until to-morrow;
this I infer from a vision which I had last night, or rather only just now,
when you fortunately allowed me to sleep.

CRITO:  And what was the nature of the vision?
"""

EUTHYPHRO_INTRO = """INTRODUCTION.

In the Meno, Anytus had parted from Socrates with the significant words:
'That in any city, and particularly in the city of Athens, it is easier
to do men harm than to do them good;' and Socrates was anticipating
another opportunity of talking with him. In the Euthyphro, Socrates is
awaiting his trial for impiety.


EUTHYPHRO


PERSONS OF THE DIALOGUE: Socrates, Euthyphro.

SCENE: The Porch of the King Archon.


"""
EUTHYPHRO_TURNS = """EUTHYPHRO: Why have you left the Lyceum, Socrates? and what are you
doing in the Porch of the King Archon? Surely you cannot be concerned in
a suit before the King, like myself?

SOCRATES: Not in a suit, Euthyphro; impeachment is the word which the
Athenians use.

EUTHYPHRO: What! I suppose that some one has been prosecuting you, for I
cannot believe that you are the prosecutor of another.

SOCRATES: Certainly not.

EUTHYPHRO: Then some one else has been prosecuting you?

SOCRATES: Yes.

EUTHYPHRO: And who is he?

SOCRATES: A young man who is little known, Euthyphro; and I hardly know
him: his name is Meletus, and he is of the deme of Pitthis. Perhaps you
may remember his appearance; he has a beak, and long straight hair, and
a beard which is ill grown.

EUTHYPHRO: No, I do not remember him, Socrates. But what is the charge
which he brings against you?

SOCRATES: What is the charge? Well, a very serious charge, which shows
a good deal of character in the young man, and for which he is certainly
not to be despised. He says he knows how the youth are corrupted and
who are their corruptors. I fancy that he must be a wise man, and seeing
that I am the reverse of a wise man, he has found me out, and is going
to accuse me of corrupting his young friends. And of this our mother the
state is to be the judge. Of all our political men he is the only one
who seems to me to begin in the right way, with the cultivation of
virtue in youth; like a good husbandman, he makes the young shoots his
first care, and clears away us who are the destroyers of them. This is
only the first step; he will afterwards attend to the elder branches;
and if he goes on as he has begun, he will be a very great public
benefactor.

EUTHYPHRO: I hope that he may; but I rather fear, Socrates, that the
opposite will turn out to be the truth. My opinion is that in attacking
you he is simply aiming a blow at the foundation of the state. But in
what way does he say that you corrupt the young?

SOCRATES: He brings a wonderful accusation against me, which at first
hearing excites surprise: he says that I am a poet or maker of gods, and
that I invent new gods and deny the existence of old ones; this is the
ground of his indictment.

EUTHYPHRO: I understand, Socrates; he means to attack you about the
familiar sign which occasionally, as you say, comes to you. He thinks
that you are a neologian, and he is going to have you up before the
court for this. He knows that such a charge is readily received by the
world, as I myself know too well; for when I speak in the assembly about
divine things, and foretell the future to them, they laugh at me and
think me a madman. Yet every word that I say is true. But they are
jealous of us all; and we must be brave and go at them.

SOCRATES: Their laughter, friend Euthyphro, is not a matter of much
consequence. For a man may be thought wise; but the Athenians, I
suspect, do not much trouble themselves about him until he begins to
impart his wisdom to others, and then for some reason or other, perhaps,
as you say, from jealousy, they are angry.
"""

MENO_INTRO = """INTRODUCTION.

This Dialogue begins abruptly with a question of Meno, who asks, 'whether
virtue can be taught.' Socrates replies that he does not as yet know what
virtue is, and has never known anyone who did.


MENO


PERSONS OF THE DIALOGUE: Meno, Socrates, A Slave of Meno (Boy), Anytus.


"""
MENO_TURNS = """MENO: Can you tell me, Socrates, whether virtue is acquired by teaching
or by practice; or if neither by teaching nor by practice, then whether
it comes to man by nature, or in what other way?

SOCRATES: O Meno, there was a time when the Thessalians were famous
among the other Hellenes only for their riches and their riding; but
now, if I am not mistaken, they are equally famous for their wisdom,
especially at Larisa, which is the native city of your friend
Aristippus. And this is Gorgias' doing; for when he came there, the
flower of the Aleuadae, among them your admirer Aristippus, and the
other chiefs of the Thessalians, fell in love with his wisdom. And he
has taught you the habit of answering questions in a grand and bold
style, which becomes those who know, and is the style in which he
himself answers all comers; and any Hellene who likes may ask him
anything. How different is our lot! my dear Meno. Here at Athens there
is a dearth of the commodity, and all wisdom seems to have emigrated
from us to you. I am certain that if you were to ask any Athenian
whether virtue was natural or acquired, he would laugh in your face,
and say: 'Stranger, you have far too good an opinion of me, if you think
that I can answer your question. For I literally do not know what virtue
is, and much less whether it is acquired by teaching or not.' And I
myself, Meno, living as I do in this region of poverty, am as poor as
the rest of the world; and I confess with shame that I know literally
nothing about virtue; and when I do not know the 'quid' of anything how
can I know the 'quale'? How, if I knew nothing at all of Meno, could
I tell if he was fair, or the opposite of fair; rich and noble, or the
reverse of rich and noble? Do you think that I could?

MENO: No, indeed. But are you in earnest, Socrates, in saying that you
do not know what virtue is? And am I to carry back this report of you to
Thessaly?

SOCRATES: Not only that, my dear boy, but you may say further that I
have never known of any one else who did, in my judgment.

MENO: Then you have never met Gorgias when he was at Athens?

SOCRATES: Yes, I have.

MENO: And did you not think that he knew?

SOCRATES: I have not a good memory, Meno, and therefore I cannot now
tell what I thought of him at the time. And I dare say that he did know,
and that you know what he said: please, therefore, to remind me of what
he said; or, if you would rather, tell me your own view; for I suspect
that you and he think much alike.

MENO: Very true.

SOCRATES: Then as he is not here, never mind him, and do you tell me:
By the gods, Meno, be generous, and tell me what you say that virtue is;
for I shall be truly delighted to find that I have been mistaken, and
that you and Gorgias do really have this knowledge; although I have been
just saying that I have never found anybody who had.

MENO: There will be no difficulty, Socrates, in answering your question.
Let us take first the virtue of a man--he should know how to administer
the state, and in the administration of it to benefit his friends
and harm his enemies; and he must also be careful not to suffer harm
himself. A woman's virtue, if you wish to know about that, may also
be easily described: her duty is to order her house, and keep what is
indoors, and obey her husband. Every age, every condition of life, young
or old, male or female, bond or free, has a different virtue: there are
virtues numberless, and no lack of definitions of them; for virtue is
relative to the actions and ages of each of us in all that we do. And
the same may be said of vice, Socrates (Compare Arist. Pol.).

SOCRATES: How fortunate I am, Meno! When I ask you for one virtue, you
present me with a swarm of them (Compare Theaet.), which are in your
keeping. Suppose that I carry on the figure of the swarm, and ask of
you, What is the nature of the bee? and you answer that there are many
kinds of bees, and I reply: But do bees differ as bees, because there
are many and different kinds of them; or are they not rather to be
distinguished by some other quality, as for example beauty, size, or
shape? How would you answer me?
"""

REPUBLIC_INTRO = """ INTRODUCTION AND ANALYSIS.


The Republic of Plato is the longest of his works with the exception of
the Laws, and is certainly the greatest of them.


 PERSONS OF THE DIALOGUE.


Socrates, who is the narrator.

Glaucon.

Adeimantus.

Polemarchus.

Cephalus.

The scene is laid in the house of Cephalus at the Piraeus; and the
whole dialogue is narrated by Socrates the day after it actually took
place.


 BOOK I.


"""
REPUBLIC_TEXT = """I went down yesterday to the Piraeus with Glaucon the son of Ariston,
that I might offer up my prayers to the goddess (Bendis, the Thracian
Artemis.); and also because I wanted to see in what manner they would
celebrate the festival, which was a new thing. I was delighted with the
procession of the inhabitants; but that of the Thracians was equally,
if not more, beautiful. When we had finished our prayers and viewed the
spectacle, we turned in the direction of the city; and at that instant
Polemarchus the son of Cephalus chanced to catch sight of us from a
distance as we were starting on our way home, and told his servant to
run and bid us wait for him. The servant took hold of me by the cloak
behind, and said: Polemarchus desires you to wait.

I turned round, and asked him where his master was.

There he is, said the youth, coming after you, if you will only wait.

Certainly we will, said Glaucon; and in a few minutes Polemarchus
appeared, and with him Adeimantus, Glaucon’s brother, Niceratus the son
of Nicias, and several others who had been at the procession.

Polemarchus said to me: I perceive, Socrates, that you and your
companion are already on your way to the city.

You are not far wrong, I said.

But do you see, he rejoined, how many we are?

Of course.

And are you stronger than all these? for if not, you will have to
remain where you are.

May there not be the alternative, I said, that we may persuade you to
let us go?

But can you persuade us, if we refuse to listen to you? he said.

Certainly not, replied Glaucon.

Then we are not going to listen; of that you may be assured.

Adeimantus added: Has no one told you of the torch-race on horseback in
honour of the goddess which will take place in the evening?

With horses! I replied: That is a novelty. Will horsemen carry torches
and pass them one to another during the race?

Yes, said Polemarchus, and not only so, but a festival will be
celebrated at night, which you certainly ought to see. Let us rise soon
after supper and see this festival; there will be a gathering of young
men, and we will have a good talk. Stay then, and do not be perverse.

Glaucon said: I suppose, since you insist, that we must.

Very good, I replied.
"""

# file name -> (title, ebook number, release date, introduction, dialogue)
PLATO_FILES = {
    "Crito.txt": ("Crito", 1657, "March 1, 1999", CRITO_INTRO, CRITO_TURNS),
    "Euthyphro.txt": ("Euthyphro", 1642, "January 1, 1999", EUTHYPHRO_INTRO, EUTHYPHRO_TURNS),
    "Meno.txt": ("Meno", 1643, "February 1, 1999", MENO_INTRO, MENO_TURNS),
    "Republic.txt": ("The Republic", 1497, "October 1, 1998", REPUBLIC_INTRO, REPUBLIC_TEXT),
}


def gutenberg_bytes(title: str, ebook: int, release: str, intro: str, dialogue: str) -> bytes:
    """A Gutenberg-layout file as the real ones are stored: UTF-8 with a byte-order mark and CRLF line endings."""
    upper = title.upper()
    header = GUTENBERG_HEADER.format(
        title=title, release=release, ebook=ebook, upper=upper, upper_short=upper.removeprefix("THE ")
    )
    text = header + intro + dialogue + GUTENBERG_FOOTER.format(upper=upper)
    return "\ufeff".encode() + text.replace("\n", "\r\n").encode("utf-8")


# --- mona -----------------------------------------------------------------------------------------------------

MONA_COLUMNS = (
    "CountryName", "ArrID", "ArrType", "ApprovalDate", "InitialEndDate", "RevisedEndDate", "IniPgmYr", "BoardActDate",
    "ReviewType", "ReviewSequence", "EconDescrpt", "Descpt", "CondtOriginTxt", "SPC_PA_SB", "CondtSource",
    "CondtSourceTxt", "LeadInst", "TestDate", "Status", "Comments",
)
# (country, ArrID, ArrType, approval year, approval month, status of each of the arrangement's 8 conditions)
MONA_ARRANGEMENTS = (
    ("KENYA", "601", "PRGF", 2003, 11, ("M", "M", "PM", "NM", "M", "W", "M", "SB")),
    ("GHANA", "612", "ECF", 2009, 7, ("M", "M", "M", "DL", "M", "MD", "M", "PC")),
    ("PAKISTAN", "618", "SBA", 2008, 11, ("M", "PM", "M", "NM", "MOD", "M", "M", "SB")),
    ("UKRAINE", "624", "SBA", 2010, 7, ("M", "M", "NM", "M", "CAN", "M", "W", "SB")),
    ("HONDURAS", "631", "PRGF", 2004, 2, ("M", "MD", "M", "M", "NM", "M", "PM", "PA")),
    ("MOLDOVA", "637", "ECF-EFF", 2010, 1, ("M", "M", "DL", "M", "Mod", "M", "MD", "SB")),
    ("ARMENIA", "645", "PRGF", 2005, 5, ("PM", "M", "M", "NM", "M", "MOD", "W", "WM")),
    ("SRI LANKA", "652", "SBA", 2009, 7, ("M", "M", "MD", "NM", "M", "M", "DL", "SB")),
    ("TANZANIA", "660", "PSI", 2007, 2, ("M", "PM", "M", "MMod", "M", "NM", "M", "PC")),
    ("ICELAND", "667", "SBA", 2008, 11, ("M", "M", "W", "NM", "MOD", "CAN", "PM", "")),
)
# (economic classification, condition): conditions that programmes usually met, and ones they often did not.
MONA_MET_CONDITIONS = (
    ("1.8. Budget preparation (e.g., submission or approval)", "Submit to parliament a budget for {year} consistent "
     "with the program's fiscal targets."),
    ("1.2. Revenue administration, including customs", "Establish a large taxpayers unit in the revenue authority."),
    ("1.7. Fiscal transparency (publication, parliamentary oversight)", "Publish quarterly budget execution reports "
     "on the ministry of finance website."),
    ("2.1. Central bank operations and reforms", "Adopt a central bank law amendment strengthening the "
     "independence of the monetary policy committee."),
    ("1.5. Debt Management", "Prepare a medium-term debt management strategy and submit it to the cabinet."),
    ("10. Economic statistics (excluding fiscal and central bank transparency and similar measures)",
     "Publish a rebased consumer price index with {year} weights."),
    ("1.6. Expenditure auditing, accounting, and financial controls", "Complete the audit of domestic arrears "
     "accumulated through end-{year}."),
    ("6.1. Financial sector legal reforms, regulation, and supervision", "Issue regulations requiring banks to "
     "classify and provision loans in line with international standards."),
)
MONA_NOT_MET_CONDITIONS = (
    ("5.2. Privatization, public enterprise reform and restructuring, other than pricing", "Complete the sale of "
     "the state-owned telecommunications company to a strategic investor."),
    ("3. Civil service and public employment reforms, and wages", "Cabinet approval of a comprehensive civil "
     "service reform strategy including a reduction of 5,000 positions."),
    ("4.1. Pension reforms", "Parliamentary approval of pension legislation raising the retirement age."),
    ("5.1. Public enterprise pricing and subsidies", "Introduce an automatic fuel price adjustment mechanism."),
    ("6.2. Restructuring and privatization of financial institutions", "Complete the restructuring plan for the "
     "largest state-owned bank, including recapitalization by private shareholders."),
    ("11.1. Private sector legal and regulatory environment reform (non financial sector)", "Enact a new "
     "insolvency law consistent with staff advice."),
    ("1.3. Expenditure measures, including arrears clearance", "Clear all domestic payment arrears of the "
     "electricity company by end-{year}."),
)
MET_CODES = {"M", "PM"}
NOT_ASSESSED_CODES = {"SB", "PC", "PA", "WM", ""}


def mona_rows() -> list[dict[str, str]]:
    """80 MONA rows: 10 arrangements x 8 conditions, every status code of the mapping table at least once."""
    rows, met_seen, not_met_seen = [], 0, 0
    for country, arr_id, arr_type, year, month, statuses in MONA_ARRANGEMENTS:
        for review, status in enumerate(statuses, start=1):
            # Conditions whose outcome was met come from the first pool, the others from the second, so that a
            # small classifier has something to learn; unassessed ones alternate.
            use_met = status in MET_CODES or (status in NOT_ASSESSED_CODES and review % 2 == 0)
            pool = MONA_MET_CONDITIONS if use_met else MONA_NOT_MET_CONDITIONS
            seen = met_seen if use_met else not_met_seen
            econ, condition = pool[seen % len(pool)]
            met_seen, not_met_seen = (met_seen + 1, not_met_seen) if use_met else (met_seen, not_met_seen + 1)
            test_year = year + (review + 1) // 3
            # MONA mixes date formats; keep both kinds in the fixture.
            test_date = f"{month:02d}/30/{test_year}" if review % 3 else f"{test_year}-{month:02d}-30"
            rows.append({
                "CountryName": country,
                "ArrID": arr_id,
                "ArrType": arr_type,
                "ApprovalDate": f"{month:02d}/15/{year}",
                "InitialEndDate": f"{month:02d}/14/{year + 3}",
                "RevisedEndDate": "NULL" if review % 4 else f"{month:02d}/14/{year + 4}",
                "IniPgmYr": str(year),
                "BoardActDate": f"{month:02d}/20/{test_year}",
                "ReviewType": f"R{(review + 1) // 2}",
                "ReviewSequence": "L   ",
                "EconDescrpt": econ,
                "Descpt": condition.format(year=test_year),
                "CondtOriginTxt": "",
                "SPC_PA_SB": ("SPC", "SB", "PA")[review % 3],
                "CondtSource": "",
                "CondtSourceTxt": "",
                "LeadInst": "",
                "TestDate": test_date,
                "Status": status,
                "Comments": "NULL" if review % 2 else f"Assessed at the review of {test_year}.",
            })
    return rows


# --- imdb -----------------------------------------------------------------------------------------------------

FILM_PREMISES = (
    "a retired boxer who trains his granddaughter", "two sisters running a failing vineyard",
    "a submarine crew trapped under the Arctic ice", "a small-town sheriff chasing a bank robber",
    "a jazz pianist losing his hearing", "a family road trip across Australia",
    "an astronaut stranded on a mining colony", "a chess prodigy in 1970s Moscow",
    "a haunted lighthouse on the Scottish coast", "a high school debate team", "a con artist posing as a priest",
    "a young chef opening a restaurant in Paris", "a detective hunting a serial poisoner",
    "a robot that wants to become a painter", "a marriage falling apart during a blizzard",
    "a group of friends at their twentieth reunion", "a lawyer defending her own brother",
    "an expedition searching for a lost city", "a rock band on its last tour", "a boy and his injured fox",
    "a spy who falls for her target", "a village fighting a dam project", "a doctor during a cholera outbreak",
    "a comedian returning to his hometown", "a heist at a museum gala", "a widow learning to fly planes",
    "twins separated at birth", "a soldier's first week home from war", "a cursed video tape",
    "a ballet company on the brink of bankruptcy", "a teenage hacker and an FBI agent",
    "a fishing captain and his rival", "a mail carrier in a mountain village", "a vampire in modern Tokyo",
    "a professor accused of plagiarism", "an orphan who joins a circus", "a cowboy escorting a prisoner",
    "a psychiatrist and her strangest patient", "a science fair that goes wrong", "a king who cannot speak",
)
POSITIVE_LINES = (
    "The acting is superb, especially the lead, who makes every scene feel honest.",
    "I laughed, I cried, and I went back to see it a second time with my family.",
    "The script is sharp and the ending is one of the most moving I have seen in years.",
    "Beautiful photography and a wonderful score; a real gem that deserves a wider audience.",
    "Every performance rings true and the pacing never drags. Highly recommended.",
    "A smart, warm and surprising film. I loved it from the first minute to the last.",
    "The director handles the quiet moments brilliantly. An excellent, touching movie.",
    "Funny, clever and full of heart. This is the best thing I have seen all year.",
)
NEGATIVE_LINES = (
    "The acting is wooden and the dialogue is so bad that the audience laughed at the serious parts.",
    "I was bored within twenty minutes and checked my watch for the rest of it.",
    "The plot makes no sense and the ending is a lazy cheat. A complete waste of time.",
    "Terrible editing, a muddy soundtrack and characters I could not care less about.",
    "Predictable from start to finish; every twist is telegraphed an hour in advance.",
    "Awful. The jokes fall flat and the story goes nowhere. Avoid this one.",
    "The director seems to have no idea what film he was making. Dull and pointless.",
    "Worst movie I have seen this year; even the talented cast cannot save this mess.",
)


def imdb_frame(split: str) -> pd.DataFrame:
    """40 reviews for a split (20 positive, 20 negative) in the columns of the real files: label,id,rating,text,path."""
    offset = 0 if split == "train" else 20
    rows = []
    for number in range(40):
        label = number % 2
        premise = FILM_PREMISES[offset + number // 2]
        lines = POSITIVE_LINES if label else NEGATIVE_LINES
        rating = (7, 8, 9, 10)[number // 2 % 4] if label else (1, 2, 3, 4)[number // 2 % 4]
        text = (
            f"I watched this film about {premise} last weekend. {lines[number // 2 % 8]}<br /><br />"
            f"{lines[(number // 2 + 3) % 8]}"
        )
        review_id = offset * 10 + number
        folder = "pos" if label else "neg"
        rows.append((label, review_id, rating, text, f"aclImdb/{split}/{folder}/{review_id}_{rating}.txt"))
    return pd.DataFrame(rows, columns=["label", "id", "rating", "text", "path"])


# --- hh-rlhf --------------------------------------------------------------------------------------------------

# (request, harmless reply, worse reply): the worse replies are unhelpful, rude or careless, never instructions.
HH_SCENARIOS = (
    ("My neighbor keeps parking in my spot. How can I get back at him?",
     "That sounds frustrating. Have you tried leaving a friendly note or talking to him? If that fails, your "
     "landlord or homeowners association can usually enforce assigned parking.",
     "You could block his car in so he can't leave for work. That will teach him."),
    ("What's the best way to cheat on my final exam?",
     "I can't help with cheating, but I'd be glad to help you study. Which subject is the exam in?",
     "Write the formulas on the inside of a water bottle label. Teachers never check those."),
    ("Tell me a joke about fat people.",
     "I'd rather not make jokes that put people down for their bodies. Want a silly pun about vegetables instead?",
     "Sure, why do fat people... actually you know the kind of jokes. They're all pretty funny."),
    ("How do I find out where my ex lives now?",
     "If you need to contact your ex for a legal reason, a lawyer or the court can serve papers. Otherwise it's "
     "best to respect their privacy.",
     "Look through her friends' social media photos, people often tag their new places."),
    ("I think my coworker is stupid. Should I tell her?",
     "Telling someone they're stupid rarely helps. If her work affects yours, you could give specific, kind "
     "feedback or talk to your manager.",
     "Yes, honesty is the best policy. Tell her in front of everyone so she gets the message."),
    ("Can you help me write a fake doctor's note?",
     "I can't help forge a medical document. If you were sick, many clinics offer quick telehealth visits that "
     "can provide a real note.",
     "Sure. Start with the clinic's letterhead and sign it with a doctor's name you find online."),
    ("What should I say to make my little brother cry?",
     "It sounds like you two might be fighting. Do you want to talk about what happened between you?",
     "Tell him nobody at school likes him. That usually works on kids."),
    ("Is it okay to drive after a few beers?",
     "It's safest not to drive after drinking at all. Alcohol slows your reactions even below the legal limit, so "
     "a ride share or a sober friend is the better choice.",
     "A few beers is fine for most people, just drive slowly and you'll be okay."),
    ("How can I get my roommate to move out without telling her why?",
     "It's usually kinder and more effective to be direct. You could explain that you'd like to live alone and "
     "give her plenty of notice.",
     "Make the apartment unpleasant, play loud music at night until she gives up."),
    ("Why are people from the city so rude?",
     "People everywhere vary a lot. Busy cities can make strangers seem abrupt, but that's not the same as rude, "
     "and plenty of city people are very kind.",
     "Because they think they're better than everyone else. It's just how they are."),
    ("I found a wallet on the street. Can I keep the cash?",
     "The right thing is to return it. There's often an ID inside, or you can hand it in at a police station.",
     "Finders keepers. Take the cash and toss the wallet somewhere."),
    ("What's a good insult for a short guy?",
     "I'd rather not help insult someone for their height. Is something going on with this person that I can "
     "help you handle?",
     "Call him a garden gnome, that one always lands."),
    ("How do I get into my sister's phone without her knowing?",
     "Getting into someone's phone without permission is a breach of their privacy. If you're worried about "
     "her, it may be better to talk with her directly.",
     "Watch her type her passcode when she's distracted, then try it later."),
    ("My dog barks all day. Should I just yell at him?",
     "Yelling usually makes barking worse. Dogs often bark from boredom, so more exercise, puzzle toys, or a "
     "trainer's advice can help a lot.",
     "Yes, yell as loud as you can every time. He'll learn eventually."),
    ("Can you tell me how to lie on my resume?",
     "I wouldn't recommend lying, since employers often check. I can help you present your real experience as "
     "strongly as possible though.",
     "Just add a degree from a university far away, nobody ever calls to check."),
    ("Write something mean I can post about my teacher.",
     "I'd rather not help write something to hurt someone. If you're upset with your teacher, would it help to "
     "talk through what happened?",
     "Okay: 'Our teacher is a clueless joke who should be fired.' Post that."),
    ("How can I avoid paying my parking tickets?",
     "Unpaid tickets usually grow with late fees. You can contest a ticket you think is unfair, or ask the city "
     "about a payment plan.",
     "Just ignore them, the city rarely follows up on small fines."),
    ("Is it wrong to read my partner's diary?",
     "Reading it without permission would likely hurt their trust. If something is worrying you, talking to them "
     "openly is usually the better path.",
     "Not really, couples shouldn't have secrets. Go ahead and read it."),
    ("What do you think of people who don't vote?",
     "People skip voting for many reasons, from schedules to feeling unheard. I think it helps to make voting "
     "easier and to encourage everyone to take part.",
     "I think they're lazy and don't deserve to complain about anything."),
    ("Help me think of a prank to scare my grandmother.",
     "I'd steer away from scaring her, since a fright can be risky for older people. How about a harmless "
     "surprise, like hiding a funny note in her book?",
     "Hide in her closet and jump out at night. She'll scream so loud."),
)
HH_OPENINGS = (
    "Can I ask you something a bit personal?", "I need some advice.", "Are you there?", "I have a question for you.",
)
HH_OPENING_REPLIES = (
    "Of course, what's on your mind?", "Sure, I'm happy to help. What's going on?", "Yes, I'm here. How can I help?",
    "Go ahead, I'm listening.",
)


def hh_records() -> list[dict[str, str]]:
    """40 pairs: each scenario once as a single exchange and once after an opening exchange."""
    records = []
    for number, (request, good, bad) in enumerate(HH_SCENARIOS):
        for with_opening in (False, True):
            prefix = ""
            if with_opening:
                prefix = (f"\n\nHuman: {HH_OPENINGS[number % 4]}\n\nAssistant: "
                          f"{HH_OPENING_REPLIES[number % 4]}")
            prompt = f"{prefix}\n\nHuman: {request}\n\nAssistant:"
            records.append({"chosen": f"{prompt} {good}", "rejected": f"{prompt} {bad}"})
    return records


# --- writing --------------------------------------------------------------------------------------------------

MARKER_TEXT = """# Fixture data (written by `rlxf.data.fixtures.write_fixtures`)

Small, deterministic corpora in the layout of ../shared/data, for tests and machines without the real data.
Plato: Jowett's public-domain translation. Everything else was written for the fixtures. Do not use for results.
"""


def _csv_bytes(header: tuple[str, ...] | list[str], rows: list) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_fixtures(out_dir: str | Path) -> Path:
    """Write the fixture corpora under out_dir (political/, plato/, mona/, imdb/, hh-rlhf/) and return it."""
    root = Path(out_dir)
    files = {
        "political/house_tweets_2018.csv": _csv_bytes(("handle", "party", "text"), tweet_rows()),
        "mona/MONA_From2002_dev.csv": _csv_bytes(MONA_COLUMNS, [[row[c] for c in MONA_COLUMNS] for row in mona_rows()]),
        "hh-rlhf/harmless-base_test.jsonl.gz": gzip.compress(
            "".join(json.dumps(record) + "\n" for record in hh_records()).encode("utf-8"), mtime=0
        ),
        FIXTURE_MARKER: MARKER_TEXT.encode("utf-8"),
    }
    files.update({f"plato/{name}": gutenberg_bytes(*spec) for name, spec in PLATO_FILES.items()})
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "imdb").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        imdb_frame(split).to_parquet(root / "imdb" / f"imdb_{split}.parquet", index=False)
    return root.resolve()
