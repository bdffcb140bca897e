"""The metric, on hand-checked cases."""

import pytest

import edu_qa


@pytest.mark.parametrize("text,expected", [
    ("The Mitochondrion!", "mitochondrion"),
    ("An  apple, a pear", "apple pear"),
    ("six", "6"),
    ("one hundred", "100"),
    ("One hundred and five apples", "105 apples"),
    ("fifty-six", "56"),
    ("twenty one", "21"),
    ("three thousand two hundred", "3200"),
    ("five, seven and five", "5 7 and 5"),   # punctuation ends a number
    ("one two", "1 2"),                      # two numbers, not 3
    ("a hundred and cats", "100 and cats"),  # a trailing 'and' is a word
    ("300,000 km", "300000 km"),
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
])
def test_is_correct(prediction, key, correct):
    assert edu_qa.is_correct(prediction, key, "unused reference") is correct


def test_without_key_the_whole_answer_must_occur():
    assert edu_qa.is_correct("I think it is Paris, France.", None, "Paris")
    assert not edu_qa.is_correct("London", None, "Paris")


def test_f1_hand_computed():
    # prediction tokens: [mitochondrion, makes, atp]; reference: [mitochondrion, it, makes,
    # energy]; common 2 -> precision 2/3, recall 2/4 -> F1 = 2*(2/3)*(1/2)/(2/3+1/2) = 4/7
    assert edu_qa.f1("The mitochondrion makes ATP", "The mitochondrion. It makes energy") == \
        pytest.approx(4 / 7)
    assert edu_qa.f1("nothing shared", "mitochondrion") == 0.0
    assert edu_qa.f1("six", "6") == 1.0


def test_score_overall_and_per_subject():
    mk = lambda q, a, k, s: edu_qa.QA(q, a, k, s, "test", 1)  # noqa: E731
    examples = [mk("q1", "Four.", "4", "maths"), mk("q2", "Water.", "water", "chemistry"),
                mk("q3", "Neon.", "neon", "chemistry")]
    result = edu_qa.score(examples, ["four", "water", "argon"])
    assert result["n"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["per_subject"]["maths"] == {"n": 1, "accuracy": 1.0, "f1": 1.0}
    assert result["per_subject"]["chemistry"]["accuracy"] == 0.5
    assert result["f1"] == pytest.approx(2 / 3, abs=1e-4)
