"""The error tree: every fault carries its IPS type, code and reason."""

from __future__ import annotations

from jobengine.errors import InvalidParameter, IpsFault, NotSupported


def test_faults_carry_type_code_and_reason() -> None:
    fault = NotSupported("OptimizeImagesJob is not supported", field="optimizeImagesJob")
    assert isinstance(fault, InvalidParameter) and isinstance(fault, IpsFault)
    assert (fault.fault, fault.code, fault.name) == ("ipsApiFault", 30001, "INVALID_PARAMETER")
    assert fault.to_dict() == {
        "fault": "ipsApiFault",
        "code": 30001,
        "reason": "OptimizeImagesJob is not supported",
        "field": "optimizeImagesJob",
    }
