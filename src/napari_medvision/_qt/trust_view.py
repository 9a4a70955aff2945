"""What the docks show and do about a bundle's own code: the findings, the Trust tick, remembering it.

One mechanism for every dock that runs bundles (the Run-model dock, the Annotate dock's zoo
bundles): the findings are the trust gate's (``Bundle.trust_findings``), checked off the GUI thread;
a tick is remembered for the bundle's exact files (``core.models.trust_store``) in the worker thread
that runs the job; the gate itself (``Bundle.check_trust``) refuses an untrusted bundle before it builds.
"""

from __future__ import annotations

from ..core.models import Bundle, trust_store

#: The Trust tick's text and tooltip.
TRUST_TEXT = "Trust this model's code"
TRUST_TIP = "remembered for these exact files"
#: Shown for a bundle the gate finds nothing to trust in.
NO_CODE = "Runs no code of its own: no trust needed."
CHECKING = "checking what this model would run…"


def findings_html(findings: list[str]) -> str:
    """The findings as the docks list them, with the advice."""
    items = "".join(f"<li>{escape(f)}</li>" for f in findings)
    return (f"<b>Runs code of its own</b> ({len(findings)}):<ul>{items}</ul>"
            "Tick Trust only if you trust where this bundle came from.")


def show_findings(label, check, findings: list[str], ticked: bool) -> None:
    """Show a bundle's trust findings in ``label`` and set the Trust tick ``check``: unticked and
    disabled when it runs no code of its own, else enabled and ``ticked``."""
    if not findings:
        label.setText(NO_CODE)
        check.setChecked(False)
        return
    label.setText(findings_html(findings))
    check.setEnabled(True)
    check.setChecked(ticked)


def trust_state(bundle: Bundle) -> tuple[list[str], bool]:
    """(findings, whether trust is remembered for the bundle's present content), off the GUI thread."""
    findings = bundle.trust_findings()
    if not isinstance(bundle, Bundle):  # nnU-Net models: nothing to remember (their checkpoints are never unpickled)
        return findings, False
    return findings, bool(findings) and trust_store.is_trusted(bundle.path)


def with_trust(engine, bundle: Bundle, forget: bool):
    """The engine, after remembering (or forgetting) the user's trust, in the worker thread (hashing reads files)."""
    if not isinstance(bundle, Bundle):
        return (yield from engine)
    if bundle.trusted and bundle.trust_findings():
        trust_store.remember(bundle.path, bundle.name)
    elif forget and trust_store.is_trusted(bundle.path):
        trust_store.revoke(trust_store.content_hash(bundle.path))
    return (yield from engine)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
