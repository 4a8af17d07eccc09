"""shared_acl: a node every member writes under, created from the cluster node's ACL as read."""

from kazoo.security import ACL, Id, make_acl

from election._acl import layout_acl, member_acl, shared_acl


def _redacted(acl: list[ACL]) -> list[ACL]:
    """What a reader without ADMIN gets back from getACL: digest hashes as ``x``."""
    return [
        ACL(e.perms, Id("digest", e.id.id.split(":")[0] + ":x")) if e.id.scheme == "digest" else e
        for e in acl
    ]


def test_our_own_redacted_entry_is_restored() -> None:
    own = [member_acl("connector", "pw"), make_acl("world", "anyone", read=True)]
    assert shared_acl(_redacted(own), own) == own


def test_another_members_redacted_entry_cannot_be_copied() -> None:
    layout = layout_acl({"c1": "p1", "c2": "p2"}, admin=("admin", "pa"))
    own = [member_acl("c1", "p1")]
    assert shared_acl(_redacted(layout), own) is None


def test_an_unredacted_acl_is_kept_as_it_is() -> None:
    layout = layout_acl({"c1": "p1", "c2": "p2"}, admin=("admin", "pa"))
    assert shared_acl(layout, []) == layout
