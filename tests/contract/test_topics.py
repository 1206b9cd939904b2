"""Topic names, filters and the grammar: MQTT 3.1.1 / 5.0 wildcard rules, checked by property tests."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from broker.errors import InvalidId, InvalidTopic
from broker.ids import DeviceId
from broker.topics import (
    SharedSubscription,
    Topic,
    TopicFilter,
    TopicKind,
    event_topic,
    gateway_publish_filters,
    parse_uplink,
    telemetry_topic,
    uplink_filters,
)

level = st.text(alphabet=st.characters(exclude_characters="/+#\x00", exclude_categories=["Cs"]), max_size=6)
topic_levels = st.lists(level, min_size=1, max_size=6)


def reference_match(filter_levels: list[str], topic_levels: list[str]) -> bool:
    """A direct, recursive reading of the spec's matching rules (MQTT 3.1.1 §4.7, 5.0 §4.7)."""
    if not filter_levels:
        return not topic_levels
    head, rest = filter_levels[0], filter_levels[1:]
    if head == "#":
        return True  # matches the parent level and any number of child levels
    if not topic_levels:
        return False
    return (head in ("+", topic_levels[0])) and reference_match(rest, topic_levels[1:])


@st.composite
def filter_for(draw: st.DrawFn, levels: list[str]) -> list[str]:
    """A filter derived from a topic by replacing levels with wildcards, or a random one."""
    out: list[str] = []
    for lv in levels:
        choice = draw(st.sampled_from(["keep", "plus", "hash", "other"]))
        if choice == "hash":
            out.append("#")
            return out
        out.append({"keep": lv, "plus": "+", "other": draw(level)}[choice])
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(["#", "+", "x"])))
    return out


@given(data=st.data(), levels=topic_levels)
def test_filter_matching_follows_the_spec(data: st.DataObject, levels: list[str]) -> None:
    topic = "/".join(levels)
    if topic == "":
        return
    flevels = data.draw(filter_for(levels))
    assume("/".join(flevels) != "")  # an empty filter is not a filter
    f = TopicFilter("/".join(flevels))
    expected = reference_match(flevels, levels)
    if levels[0].startswith("$") and flevels[0] in ("+", "#"):
        expected = False  # a wildcard first level never matches a $-topic
    assert f.matches(topic) is expected


@given(levels=topic_levels)
def test_hash_matches_everything_except_dollar_topics(levels: list[str]) -> None:
    topic = "/".join(levels)
    if topic == "":
        return
    assert TopicFilter("#").matches(topic) is (not topic.startswith("$"))


@given(levels=topic_levels)
def test_a_topic_matches_itself_as_a_filter(levels: list[str]) -> None:
    topic = "/".join(levels)
    if topic:
        assert TopicFilter(topic).matches(topic)


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/#", "sport", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ],
)
def test_examples_from_the_spec(flt: str, topic: str, expected: bool) -> None:
    assert TopicFilter(flt).matches(topic) is expected


@pytest.mark.parametrize("bad", ["sport/tennis#", "sport/#/ranking", "sport+", "a/b+/c", "", "a\x00b"])
def test_invalid_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        TopicFilter(bad)


@pytest.mark.parametrize("bad", ["a/+/b", "a/#", "", "x\x00"])
def test_topic_names_carry_no_wildcards(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        Topic(bad)


def test_grammar_round_trips() -> None:
    t = telemetry_topic("c01-gw-b01", "c01-b01-1-101-meter")
    assert t == "sw/v1/gw/c01-gw-b01/dev/c01-b01-1-101-meter/telemetry"
    parsed = parse_uplink(t)
    assert (parsed.kind, parsed.gateway, parsed.device) == (TopicKind.TELEMETRY, "c01-gw-b01", "c01-b01-1-101-meter")
    assert str(parsed) == t
    for kind, flt in uplink_filters().items():
        assert flt.matches(str(parse_uplink(event_topic("g", "d")))) is (kind is TopicKind.EVENT)


@given(gw=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), dev=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
def test_every_device_topic_is_caught_by_the_gateway_publish_filters_exactly_once(gw: str, dev: str) -> None:
    for topic in (telemetry_topic(gw, dev), event_topic(gw, dev)):
        assert sum(f.matches(topic) for f in gateway_publish_filters()) == 1
        assert parse_uplink(topic).device == dev


@pytest.mark.parametrize("bad", ["a/b", "dev+1", "#", "", "x" * 65, "-leading"])
def test_ids_that_could_break_a_topic_are_refused(bad: str) -> None:
    with pytest.raises(InvalidId):
        DeviceId(bad)


def test_shared_subscription_syntax() -> None:
    assert str(SharedSubscription("ingest", TopicFilter("sw/v1/gw/+/dev/#"))) == "$share/ingest/sw/v1/gw/+/dev/#"
    with pytest.raises(InvalidId):
        SharedSubscription("a/b", TopicFilter("x"))


@pytest.mark.parametrize(
    "bad", ["sw/v1/gw/g1", "sw/v2/gw/g1/status", "sw/v1/gw/g1/dev/d1/smell", "sw/v1/gw/g+1/status", "sw/v1/gw/g1/dev/d1"]
)
def test_parse_uplink_says_what_is_wrong(bad: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        parse_uplink(bad)
    assert info.value.why
