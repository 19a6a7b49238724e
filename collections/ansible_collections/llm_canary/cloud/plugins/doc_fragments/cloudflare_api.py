# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - A Cloudflare API token (not the global API key). A Worker deploy needs the permissions
        C(Workers Scripts:Edit) on the account, and C(Workers Routes:Edit) on each zone with routes
        or custom domains.
      - Never logged. If not set, the environment variable E(CLOUDFLARE_API_TOKEN) is used.
    type: str
    required: true
  api_base_url:
    description:
      - Base URL of the Cloudflare v4 API. Point it at a test double or a proxy.
      - If not set, the environment variable E(CLOUDFLARE_API_BASE_URL) is used (the same variable
        wrangler reads), then the default.
    type: str
    default: https://api.cloudflare.com/client/v4
  api_retries:
    description:
      - How often a call that failed with HTTP 429, a 5xx or a connection error is retried, with
        exponential backoff from 1 s (or the API's C(Retry-After), at most 60 s).
    type: int
    default: 4
  api_timeout:
    description: Seconds to wait for each API answer.
    type: int
    default: 60
"""
