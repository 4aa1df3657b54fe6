"""Short sentences from the evidence of an `Explanation`, by templates.

Only evidence that is positive is cited: a history item only if removing it
lowers the item's score (leave-one-out contribution > 0), a genre only if at least
two history items have it, a co-occurrence only if its count is > 0, a user
attribute or the request time only if making it unknown lowers the score. The
popularity prior is cited first when it is at least half of the score (its part is
the same for every user, so no contribution shows it). An item without a trained id whose
text profile term is positive is "like what you watched" (its text resembles the user's
history's; leave-one-out does not show it, the profile reading the whole history), and with
the profile's lexical term its description "shares" the words that add most to it (function
words and a template's own words left unnamed). The
co-occurrence block (EASE's item-item scores from the whole history) is cited when it is
at least half of the score, as the prior is.

    Because you watched Toy Story (1995) and Aladdin (1992), and you often watch Animation.
    Because it is popular lately, you watched Emma (1996), and you often watch Drama.
"""

MIN_GENRE_COUNT = 2  # "you often watch X": at least this many history items have X
MAX_WORDS = 3  # "its description shares ..." names at most this many of the lexical term's words
# Words the sentence does not name (they stay in `Explanation.text_profile_words`, which is exact): English
# function words and single letters; `Explainer` adds the words of more than half the catalogue's texts
# (a template's own words, such as "Genres").
STOPWORDS = frozenset(
    "a an and are as at be but by de for from has he her his i in is it its la le me my no not of on or our "
    "she so than that the their them they this to up was we what when who will with you your".split())


def join_titles(titles) -> str:
    """["A"] -> "A"; ["A", "B"] -> "A and B"; ["A", "B", "C"] -> "A, B and C"."""
    titles = list(titles)
    if len(titles) <= 1:
        return "".join(titles)
    return ", ".join(titles[:-1]) + " and " + titles[-1]


_ATTRIBUTE_WORDS = {"user_id": "your past activity", "timestamp": "the time of your request"}


def named_words(words, skip_words=()) -> list:
    """The words of `words` ([(word, part)], largest first) that a sentence names: at most `MAX_WORDS`,
    leaving out `STOPWORDS`, `skip_words` and single letters."""
    keep = [w for w, _ in words if w not in STOPWORDS and w not in skip_words and (len(w) > 1 or w.isdigit())]
    return keep[:MAX_WORDS]


def sentence(explanation, k_history=3, skip_words=()) -> str:
    """The one-sentence explanation of `explanation` (an `Explanation`); `skip_words`: more words of
    `text_profile_words` not to name (besides `STOPWORDS` and single letters)."""
    e = explanation
    # A title watched twice is cited once (dict keeps the largest contribution's order).
    watched = list(dict.fromkeys(h.title for h in e.history if h.leave_one_out > 0))[:k_history]
    genres = [g for g, n in e.shared_genres if n >= MIN_GENRE_COUNT][:1]
    clauses = []
    if e.popularity_prior > 0 and e.popularity_prior >= e.score - e.popularity_prior:
        clauses.append("items like it are popular lately" if e.prior_predicted else "it is popular lately")
    if e.text_profile > 0:
        words = [f'"{w}"' for w in named_words(e.text_profile_words, skip_words)]
        clauses.append(f"its description shares {join_titles(words)} with what you watched" if words
                       else "its description is like what you watched")
    if e.cooccurrence > 0 and e.cooccurrence >= e.score - e.cooccurrence:
        clauses.append("people who watched what you watched also watched it")
    if watched:
        clauses.append(f"you watched {join_titles(watched)}")
    if genres:
        clauses.append(f"you often watch {genres[0]}")
    if clauses:
        head = ", ".join(clauses[:-1])
        return "Because " + (f"{head}, and {clauses[-1]}" if head else clauses[0]) + "."
    cooc = [c for c in e.co_occurrence if c["count"] > 0]
    if cooc:
        c = cooc[0]
        return f"People who watched {c['title']} also watched {e.title} ({c['count']} of them)."
    attrs = [(n, v) for n, v in sorted(e.attributes.items(), key=lambda kv: -kv[1]) if v > 0]
    if attrs:
        name = attrs[0][0]
        what = _ATTRIBUTE_WORDS.get(name, f"your {name.replace('_', ' ')}")
        return f"Recommended for {what}; {e.title} is popular with {e.item_popularity} viewers."
    return f"{e.title} is popular: {e.item_popularity} viewers watched it."
