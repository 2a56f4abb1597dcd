"""No phoning home: third-party usage telemetry is switched off inside the tool, always.

OpenVINO's Python package sends a Google Analytics event when it is imported (``import openvino``
imports ``openvino.tools.ovc``, which sends ``"ov import"``) and on every model conversion, unless
the user ran ``opt_in_out --opt_out`` once on that machine. An offline run must not make DNS
look-ups of an analytics host, so before any OpenVINO import the tool declines consent and
disconnects the sender, in this process only (nothing is written to the user's home).
``tests/faults/test_offline_network.py`` runs the embedder with every socket connection and
name look-up refused and fails on any attempt.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_DONE = False


def opt_out_openvino_telemetry() -> bool:
    """Decline OpenVINO telemetry consent and make its sender a no-op; idempotent.

    Returns:
        True when ``openvino_telemetry`` is installed (and now silenced), False when it is absent
        (then OpenVINO uses its own stub, which sends nothing).
    """
    global _DONE
    if _DONE:
        return True
    try:
        from openvino_telemetry.main import Telemetry
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
        from openvino_telemetry.utils.sender import TelemetrySender
    except ImportError:
        return False
    except Exception as e:  # noqa: BLE001 - a broken telemetry package must not stop a run
        log.debug("openvino_telemetry unusable (%s); not patched", e)
        return False

    def declined(self, *args, **kwargs):
        return ConsentCheckResult.DECLINED

    def no_send(self, *args, **kwargs):
        return None

    OptInChecker.check = declined
    TelemetrySender.send = no_send
    # a Telemetry instance created before this call (openvino imported first) keeps no consent
    inst = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
    if inst is not None:
        inst.consent = False
    _DONE = True
    return True
