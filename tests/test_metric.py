"""The metric, on hand-checked cases: the answers quoted are the embedded model's own, from
results/*.json, that an earlier grader marked wrong (or right) by mistake."""

import pytest

import edu_qa
from edu_qa import scoring


@pytest.mark.parametrize("text,expected", [
    ("The Mitochondrion!", "mitochondrion"),
    ("An  apple, a pear", "apple pear"),
    ("six", "6"),
    ("one hundred", "100"),
    ("One hundred and five apples", "105 apple"),
    ("fifty-six", "56"),
    ("twenty one", "21"),
    ("three thousand two hundred", "3200"),
    ("five, seven and five", "5 7 and 5"),   # punctuation ends a number
    ("one two", "1 2"),                      # two numbers, not 3
    ("a hundred and cats", "100 and cat"),   # a trailing 'and' is a word
    ("300,000 km", "300000 km"),             # a thousands separator goes
    ("365.25 days", "365.25 day"),           # a decimal point stays
    ("The Moon's gravity", "moon gravity"),  # possessive
    ("Romans", "roman"),                     # plural
    ("glass gas virus axis", "glass gas virus axis"),  # words that end in s are kept
    ("kilometres of vapour", "kilometer of vapor"),    # one spelling
    ("H₂O", "h2o"),
])
def test_normalize(text, expected):
    assert edu_qa.normalize(text) == expected


@pytest.mark.parametrize("prediction,key,correct", [
    ("Water is H2O.", "H2O|water", True),
    ("It is WATER", "H2O|water", True),
    ("There are six sides.", "6", True),        # words = digits
    ("It has 6 sides", "six", True),            # digits = words
    ("one hundred degrees", "100", True),
    ("There are 16 of them", "6", False),       # whole words only: 6 is not in 16
    ("The mitochondria", "mitochondrion|mitochondria", True),
    ("I do not know", "Darwin", False),
    ("Red blood cells carry it", "red blood cells", True),
    ("Blood cells that are red", "red blood cells", False),  # the words in order
    # possessives and plurals: real answers an earlier grader failed
    ("The primary cause of ocean tides is the gravitational pull of the moon and the sun, "
     "combined with the Earth's rotation", "Moon", True),
    ("The Moon's gravity.", "Moon", True),
    ("Albert Einstein's theory of relativity", "Einstein", True),
    ("Washington's presidency began in 1789", "Washington", True),
    ("Britain's textile mills", "Britain|England|United Kingdom", True),
    ("The Romans.", "Roman", True),
    ("Geologists.", "geologist", True),
    # decimals: kept, and a key with decimals states its precision
    ("The Earth takes approximately 365.25 days to complete one orbit around the Sun.",
     "one year|365|365.25|365.24|365.26|365.256", True),
    ("About 9.81 m/s².", "9.8", True),
    ("Pi is 3.14159.", "3.14", True),
    ("Pi is 3.2.", "3.14", False),
    ("The mean is 5.2.", "5", False),            # a whole-number key is exact
    ("36525", "365", False),                     # the old grader's '365.25' is not 365
    ("About 300,000 kilometers per second.", "300000|299792", True),
    # negation right before the key does not count
    ("Oxygen, not nitrogen.", "nitrogen", False),
    ("Nitrogen, not oxygen.", "nitrogen", True),
    ("Argon rather than nitrogen.", "nitrogen", False),
    # a paraphrase the key lists
    ("The prime numbers are those that have no positive integer divisors other than 1 and "
     "themselves.", "1 and itself|1 and themselves", True),
    ("A haiku is a three-line poem.", "three lines|5-7-5|17 syllables", True),
])
def test_is_correct(prediction, key, correct):
    assert edu_qa.is_correct(prediction, key, "unused reference") is correct


def test_echo_key_would_pass_a_wrong_answer_so_the_shipped_key_is_a_fact():
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    light = next(r for r in data.records if r.question.startswith("Which travels faster"))
    assert edu_qa.is_correct("Sound travels faster than light.", "light", light.answer)
    assert not edu_qa.is_correct("Sound travels faster than light.", light.key, light.answer)
    assert edu_qa.is_correct("Light travels faster than sound.", light.key, light.answer)


def test_strict_needs_the_key_in_the_first_sentence():
    # LoRA's answer to "Which gas makes up most of Earth's atmosphere?"
    answer = "The atmosphere. It contains about 79% nitrogen and 20% oxygen."
    g = scoring.grade(answer, "nitrogen", "Nitrogen.")
    assert g["correct"] and not g["strict"]
    assert scoring.grade("Nitrogen. About 78%.", "nitrogen", "Nitrogen.")["strict"]
    assert scoring.first_sentence("It is 9.8 m/s. Roughly.") == "It is 9.8 m/s."


def test_without_key_the_whole_answer_must_occur():
    assert edu_qa.is_correct("I think it is Paris, France.", None, "Paris")
    assert not edu_qa.is_correct("London", None, "Paris")


def test_f1_hand_computed():
    # prediction tokens: [mitochondrion, make, atp]; reference: [mitochondrion, it, make,
    # energy]; common 2 -> precision 2/3, recall 2/4 -> F1 = 2*(2/3)*(1/2)/(2/3+1/2) = 4/7
    assert edu_qa.f1("The mitochondrion makes ATP", "The mitochondrion. It makes energy") == \
        pytest.approx(4 / 7)
    assert edu_qa.f1("nothing shared", "mitochondrion") == 0.0
    assert edu_qa.f1("six", "6") == 1.0


def mk(q, a, k, s="maths"):
    return edu_qa.QA(q, a, k, s, "test", 1)


def test_score_overall_per_subject_and_format():
    examples = [mk("q1", "Four.", "4"), mk("q2", "Water.", "water", "chemistry"),
                mk("q3", "Neon.", "neon", "chemistry")]
    result = edu_qa.score(examples, ["four", "It is a liquid. Water", "argon"])
    assert result["n"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["strict_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["answer_first"] == 0.5  # of the 2 right answers, 1 gives the key first
    assert result["per_subject"]["maths"] == {"n": 1, "accuracy": 1.0, "f1": 1.0}
    assert result["per_subject"]["chemistry"]["accuracy"] == 0.5
    assert result["words_per_answer"] == pytest.approx(7 / 3, abs=0.05)


def test_intervals_match_textbook_values():
    # Wilson 95% interval of 13/24 (any statistics table): 0.351 to 0.721
    assert scoring.wilson(13, 24) == pytest.approx([0.3507, 0.7211], abs=1e-3)
    # 0/24 is not 'exactly 0': the interval reaches 0.138
    assert scoring.wilson(0, 24) == pytest.approx([0.0, 0.138], abs=1e-3)
    lo, hi = scoring.bootstrap_mean([0.1, 0.5, 0.3] * 8)
    assert lo < 0.3 < hi and hi - lo < 0.2
    assert scoring.bootstrap_mean([0.1, 0.5, 0.3] * 8) == [lo, hi]  # seeded: repeatable


def rows(before, after, key="x"):
    return [{"question": f"q{i}", "key": key, "reference": key, "before": b, "after": a}
            for i, (b, a) in enumerate(zip(before, after))]


def test_paired_change_six_fixed_one_broken_is_within_noise():
    # LoRA's first committed run: 6 fixed, 1 broken of 24; exact McNemar p = 2*P(X<=1 | 7)
    # = 2 * 8/128 = 0.125
    before = ["x"] * 7 + ["no"] * 6 + ["x"] * 6 + ["no"] * 5
    after = ["x"] * 7 + ["x"] * 6 + ["x"] * 5 + ["no"] + ["no"] * 5
    c = scoring.compare(rows(before, after))
    assert (len(c["fixed"]), len(c["broken"]), len(c["still_wrong"])) == (6, 1, 5)
    assert c["mcnemar_p"] == pytest.approx(0.125)
    assert not c["accuracy_beyond_noise"]
    assert scoring.change_in_words(c).endswith("within noise")


def test_paired_change_ten_fixed_none_broken_is_more_than_noise():
    c = scoring.compare(rows(["no"] * 10 + ["x"] * 14, ["x"] * 24))
    assert c["fixed"] == [f"q{i}" for i in range(10)] and not c["broken"]
    assert c["mcnemar_p"] == pytest.approx(2 / 2 ** 10, abs=1e-4)
    assert c["accuracy_beyond_noise"] and c["f1_beyond_noise"]
    assert c["f1_change_ci"][0] > 0
    assert "more than noise" in scoring.change_in_words(c, "f1")
