"""`ark_tls`: a host's TLS certificate from the control node's CA (issue #19 §4, ark_ops/pki.py).

    {{ lookup('ark_tls', inventory_hostname, dir=inventory_dir ~ '/.secrets/tls',
              subjects=[addresses and names], renew_days=30) }}

Returns {cert, key, ca, not_after, changed} (PEM strings): the certificate on file while it is
good, a new one when missing, another CA's, for other names, or inside the renewal window.
Runs on the control node; the CA key never leaves it. Tasks that use the key are no_log.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

from ark_ops.pki import RENEW_DAYS, CertificateAuthority, PkiError  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if len(terms) != 1:
            raise AnsibleLookupError("ark_tls: give exactly one host name")
        directory = kwargs.get("dir")
        if not directory:
            raise AnsibleLookupError("ark_tls: dir= (the inventory's .secrets/tls) is required")
        try:
            issued = CertificateAuthority(Path(directory)).issue(
                str(terms[0]), [str(a) for a in kwargs.get("subjects", [])],
                int(kwargs.get("renew_days", RENEW_DAYS)))
        except (PkiError, ValueError) as exc:
            raise AnsibleLookupError(f"ark_tls: {exc}") from None
        return [issued.as_dict()]
