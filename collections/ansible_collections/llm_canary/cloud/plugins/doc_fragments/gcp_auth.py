# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options shared by the llm_canary.cloud gcp_* modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  project:
    description:
      - The GCP project ID.
      - Falls back to the E(GCP_PROJECT) environment variable.
    type: str
    required: true
  auth_kind:
    description:
      - How to authenticate. V(application) uses Application Default Credentials,
        V(accesstoken) the token in O(access_token), V(serviceaccount) the key in O(service_account_file).
      - Falls back to the E(GCP_AUTH_KIND) environment variable.
    type: str
    default: application
    choices: [application, accesstoken, serviceaccount]
  access_token:
    description:
      - An OAuth2 access token, for O(auth_kind=accesstoken).
      - Falls back to the E(GCP_ACCESS_TOKEN) environment variable.
    type: str
  service_account_file:
    description:
      - A service account JSON key file, for O(auth_kind=serviceaccount).
      - Falls back to the E(GCP_SERVICE_ACCOUNT_FILE) environment variable.
    type: path
  api_retries:
    description:
      - How many times to retry a call that failed with HTTP 429 or 5xx or could not connect,
        with exponential backoff starting at one second.
    type: int
    default: 4
  api_propagation_timeout:
    description:
      - How many seconds to keep retrying, with exponential backoff up to ten seconds apart, a call
        refused because a change has not propagated yet, which Google documents as passing by
        itself - an API enabled a moment ago (HTTP 403 C(SERVICE_DISABLED)), or for
        M(llm_canary.cloud.gcp_project_iam_members) a service account made a moment ago (HTTP 400
        "does not exist").
      - A user's credentials without a quota project also get C(SERVICE_DISABLED) (naming gcloud's
        own project); that is not retried, and the error says what to run.
    type: int
    default: 300
requirements:
  - google-auth
  - requests
notes:
  - HTTPS proxies and CA bundles are honoured through E(HTTPS_PROXY) and E(REQUESTS_CA_BUNDLE).
"""
