"""The metric, and how sure a score is: grading answers against the dataset's keys.

    grade()     one answer: key found anywhere (accuracy), key in the first sentence (strict
                accuracy), word-overlap F1 with the reference answer
    score()     many answers: accuracy, strict accuracy and F1, each with a 95% interval; how
                the answers are written (words per answer, answer first)
    compare()   two sets of answers to the same questions: which questions were fixed, broken or
                are still wrong, and whether the change is more than noise (paired tests)

Matching is SQuAD's normalization (lower case, no punctuation, no articles) with five repairs a
key needs to mean "the fact is there": numbers as words equal digits ("six" = "6"), a decimal
point is kept ("9.81" is not "981"), a possessive or plural is the word itself ("the Moon's",
"Romans" match "Moon", "Roman"), British and American spellings are one ("kilometres" =
"kilometers"), and a key right after a negation does not count ("oxygen, not
nitrogen" does not answer "nitrogen"). A key with decimals states its precision: "9.81"
matches the key "9.8", "3.14159" the key "3.14"; a whole-number key is exact ("5.2" does not
answer "5"). Known limit: a negation further away ("it is
nitrogen? No.") is not seen; strict accuracy, which looks only at the first sentence, shows how
much a score leans on text after the answer.

Statistics come from scipy.stats: a Wilson interval for accuracy (exact enough for 24 questions
and right at 0 or 1, where a bootstrap collapses to a point), a seeded bootstrap over questions
for F1 and for a paired change in F1, and the exact McNemar test (a binomial test on the
questions that changed) for a change in accuracy.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter, defaultdict
from decimal import Decimal, InvalidOperation

CONFIDENCE = 0.95
SEED = 0  # the bootstrap is seeded: the same answers always give the same interval
RESAMPLES = 9999

NEGATIONS = {"not", "no", "never", "nor", "neither", "isnt", "arent", "wasnt", "werent",
             "dont", "doesnt", "didnt", "cannot", "cant", "without"}
NEGATION_PAIRS = {("rather", "than"), ("instead", "of")}

# ----------------------------------------------------------------------------------------------
# normalization

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_PUNCTUATION = set(string.punctuation) | set("‘’“”–—…·×")
_DECIMAL = "\x00"  # stands for a decimal point while other punctuation is removed


def _numbers_to_digits(text: str) -> str:
    """'one hundred and five' -> '105', 'fifty-six' -> '56'. Punctuation ends a number, so
    'five, seven and five' stays three numbers."""
    out: list[str] = []
    total = current = 0
    last = None  # what the number so far ended with: unit, tens, scale, and

    def flush():
        nonlocal total, current, last
        if last is not None:
            out.append(str(total + current))
            if last == "and":  # 'a hundred and cats': the 'and' was an ordinary word
                out.append("and")
        total = current = 0
        last = None

    for token in text.replace("-", " ").split():
        word = token.strip(string.punctuation)
        if last is not None and not _continues(word, last):
            flush()  # 'one two' is two numbers: end this one, let the word start the next
        if word in _UNITS:
            current, last = current + _UNITS[word], "unit"
        elif word in _TENS:
            current, last = current + _TENS[word], "tens"
        elif word == "hundred":
            current, last = max(current, 1) * 100, "scale"
        elif word in ("thousand", "million"):
            total, current, last = total + max(current, 1) * _SCALES[word], 0, "scale"
        elif word == "and" and last == "scale" and token == word:
            last = "and"
        else:
            flush()
            out.append(token)
            continue
        if token != word:  # 'five,' : the punctuation ends this number
            flush()
    flush()
    return " ".join(out)


def _continues(word: str, last: str) -> bool:
    """Can `word` extend a number that so far ended with a `last` kind of word?"""
    return ((word in _UNITS and (last in ("scale", "and")
                                 or (last == "tens" and 0 < _UNITS[word] < 10)))
            or (word in _TENS and last in ("scale", "and"))
            or (word == "hundred" and last == "unit")
            or word in ("thousand", "million")
            or (word == "and" and last == "scale"))


def _singular(word: str) -> str:
    """'romans' -> 'roman', 'bodies' -> 'body'; 'glass', 'virus', 'axis', 'gas' stay. Applied
    to key and answer alike, so an odd stem ('does' -> 'doe') still matches itself."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) \
            and not word[0].isdigit():
        return word[:-1]
    return word


def _one_spelling(word: str) -> str:
    """British and American spellings as one: 'kilometre' = 'kilometer', 'vapour' = 'vapor'."""
    if len(word) > 4 and word.endswith("tre"):
        return word[:-3] + "ter"
    if len(word) > 5 and word.endswith("our"):
        return word[:-3] + "or"
    return word


def normalize(text: str) -> str:
    """Lower case, numbers as digits, decimals kept, no other punctuation, no articles,
    possessives and plurals as the word itself, one spelling, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()          # 'H₂O' -> 'h2o'
    text = re.sub(r"(\w)['’]s\b", r"\1", text)                  # "moon's" -> 'moon'
    text = _numbers_to_digits(text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)             # '300,000' -> '300000'
    text = re.sub(r"(?<=\d)\.(?=\d)", _DECIMAL, text)           # '9.81' keeps its point
    text = "".join(ch for ch in text if ch not in _PUNCTUATION).replace(_DECIMAL, ".")
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(_one_spelling(_singular(w)) for w in text.split())


# ----------------------------------------------------------------------------------------------
# one answer


def first_sentence(text: str) -> str:
    """Up to the first '.', '!' or '?' followed by a space, or the first line break."""
    return re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]


def _number(token: str) -> Decimal | None:
    try:
        return Decimal(token) if re.fullmatch(r"\d+(\.\d+)?", token) else None
    except InvalidOperation:
        return None


def _same_token(said: str, want: str) -> bool:
    """Equal words; or numbers equal at the key's precision ('9.81' answers '9.8')."""
    if said == want:
        return True
    key, answer = _number(want), _number(said)
    if key is None or answer is None:
        return False
    places = -key.as_tuple().exponent
    if places <= 0:  # a whole-number key is exact: '5.2' does not answer '5'
        return answer == key
    return answer.quantize(Decimal(1).scaleb(-places), rounding="ROUND_HALF_UP") == key


def _negated(tokens: list[str], i: int) -> bool:
    return (i >= 1 and tokens[i - 1] in NEGATIONS) or \
        (i >= 2 and (tokens[i - 2], tokens[i - 1]) in NEGATION_PAIRS)


def key_found(prediction: str, key: str | None, answer: str) -> bool:
    """True when an alternative of the key ('H2O|water') occurs as whole words, in order, and
    not right after a negation; without a key the whole reference answer must occur."""
    said = normalize(prediction).split()
    for alt in (key.split("|") if key else [answer]):
        want = normalize(alt).split()
        for i in range(len(said) - len(want) + 1):
            if want and all(_same_token(s, w) for s, w in zip(said[i:i + len(want)], want)) \
                    and not _negated(said, i):
                return True
    return False


def is_correct(prediction: str, key: str | None, answer: str) -> bool:
    """Lenient: the key anywhere in the answer."""
    return key_found(prediction, key, answer)


def f1(prediction: str, answer: str) -> float:
    """Word-overlap F1 (SQuAD's token F1) between an answer and the reference answer: how much
    of the wording they share, not whether the fact is right."""
    pred, ref = normalize(prediction).split(), normalize(answer).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def grade(prediction: str, key: str | None, answer: str) -> dict:
    """One answer: correct (key anywhere), strict (key in the first sentence), F1, words."""
    return {"correct": key_found(prediction, key, answer),
            "strict": key_found(first_sentence(prediction), key, answer),
            "f1": f1(prediction, answer),
            "words": len(prediction.split())}


# ----------------------------------------------------------------------------------------------
# many answers, and how sure


def wilson(k: int, n: int) -> list[float]:
    """95% interval of a proportion k/n (Wilson score, scipy.stats)."""
    from scipy.stats import binomtest
    if n == 0:
        return [0.0, 1.0]
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def bootstrap_mean(values: list[float]) -> list[float]:
    """95% interval of a mean by a seeded bootstrap over questions (scipy.stats.bootstrap)."""
    import numpy as np
    from scipy.stats import bootstrap
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):  # every resample is the same
        mean = float(values.mean()) if len(values) else 0.0
        return [round(mean, 4), round(mean, 4)]
    res = bootstrap((values,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                    method="percentile", rng=np.random.default_rng(SEED))
    return [round(float(res.confidence_interval.low), 4),
            round(float(res.confidence_interval.high), 4)]


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0


def score(examples, predictions: list[str], parse_failures: int | None = None) -> dict:
    """Accuracy, strict accuracy and F1 over the examples, with 95% intervals, per subject, and
    how the answers are written."""
    if len(examples) != len(predictions):
        raise ValueError("one prediction per example")
    grades = [grade(p, ex.key, ex.answer) for ex, p in zip(examples, predictions)]
    by_subject = defaultdict(list)
    for ex, g in zip(examples, grades):
        by_subject[ex.subject].append(g)
    n, right = len(grades), sum(g["correct"] for g in grades)
    strict = sum(g["strict"] for g in grades)
    f1s = [g["f1"] for g in grades]
    return {
        "n": n,
        "accuracy": _mean(g["correct"] for g in grades), "accuracy_ci": wilson(right, n),
        "strict_accuracy": _mean(g["strict"] for g in grades),
        "strict_accuracy_ci": wilson(strict, n),
        "f1": _mean(f1s), "f1_ci": bootstrap_mean(f1s),
        "words_per_answer": round(_mean(g["words"] for g in grades), 1),
        "answer_first": round(strict / right, 4) if right else None,
        "parse_failures": parse_failures,
        "per_subject": {s: {"n": len(gs), "accuracy": _mean(g["correct"] for g in gs),
                            "f1": _mean(g["f1"] for g in gs)}
                        for s, gs in sorted(by_subject.items())},
    }


def compare(rows: list[dict], before: str = "before", after: str = "after") -> dict:
    """Two sets of answers to the same questions (rows with 'question', 'key', 'reference' and
    the two answers): which questions changed, and is the change more than noise?"""
    from scipy.stats import binomtest
    fixed, broken, still_wrong, da, df = [], [], [], [], []
    for r in rows:
        b = grade(r[before], r.get("key"), r["reference"])
        a = grade(r[after], r.get("key"), r["reference"])
        if a["correct"] and not b["correct"]:
            fixed.append(r["question"])
        elif b["correct"] and not a["correct"]:
            broken.append(r["question"])
        elif not a["correct"]:
            still_wrong.append(r["question"])
        da.append(int(a["correct"]) - int(b["correct"]))
        df.append(a["f1"] - b["f1"])
    changed = len(fixed) + len(broken)
    # exact McNemar: under "no real change", each changed question is a fair coin flip
    p = binomtest(len(fixed), changed).pvalue if changed else 1.0
    f1_ci = bootstrap_mean(df)
    return {"n": len(rows), "fixed": fixed, "broken": broken, "still_wrong": still_wrong,
            "accuracy_change": _mean(da),
            "mcnemar_p": round(float(p), 4), "accuracy_beyond_noise": bool(p < 1 - CONFIDENCE),
            "f1_change": _mean(df), "f1_change_ci": f1_ci,
            "f1_beyond_noise": bool(f1_ci[0] > 0 or f1_ci[1] < 0)}


def smallest_net_change(changed: int) -> int | None:
    """With `changed` questions that changed (fixed + broken), the smallest fixed - broken
    that the exact McNemar test calls more than noise (None: no split of so few is)."""
    from scipy.stats import binomtest
    for fixed in range(changed // 2, changed + 1):
        if binomtest(fixed, changed).pvalue < 1 - CONFIDENCE:
            return fixed - (changed - fixed)
    return None


# ----------------------------------------------------------------------------------------------
# in words


def fmt_ci(value: float, ci: list[float] | None) -> str:
    """'0.54 (0.35–0.72)'."""
    if ci is None:
        return f"{value:.2f}"
    return f"{value:.2f} ({ci[0]:.2f}–{ci[1]:.2f})"


def short_change(c: dict, measure: str = "accuracy") -> str:
    """change_in_words() for a table cell: '+0.21 (p 0.12): within noise' (exact McNemar),
    '+0.10 (+0.04 to +0.15): more than noise'."""
    noise = "more than noise" if c[f"{measure}_beyond_noise"] else "within noise"
    if measure == "accuracy":
        return f"{c['accuracy_change']:+.2f} (p {c['mcnemar_p']:.2f}): {noise}"
    ci = c["f1_change_ci"]
    return f"{c['f1_change']:+.2f} ({ci[0]:+.2f} to {ci[1]:+.2f}): {noise}"


def change_in_words(c: dict, measure: str = "accuracy") -> str:
    """Accuracy: '+0.21 (6 fixed, 1 broken; exact McNemar p = 0.13): within noise'.
    F1: '+0.10 (95% interval +0.04 to +0.17): more than noise'.

    An accuracy change is judged by the questions that changed (McNemar), not by an interval,
    so that the words and the numbers beside them never disagree."""
    noise = "more than noise" if c[f"{measure}_beyond_noise"] else "within noise"
    if measure == "accuracy":
        return (f"{c['accuracy_change']:+.2f} ({len(c['fixed'])} fixed, {len(c['broken'])} "
                f"broken; exact McNemar p = {c['mcnemar_p']:.2f}): {noise}")
    ci = c["f1_change_ci"]
    return f"{c['f1_change']:+.2f} (95% interval {ci[0]:+.2f} to {ci[1]:+.2f}): {noise}"
