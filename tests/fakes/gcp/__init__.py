"""A faithful fake of the GCP APIs the infra play calls, behind an intercepting HTTPS proxy.

fake = FakeGcp()
fake.platform.add_project("canary-test")
running = RunningFake(fake, tmp_path)   # then run clients with running.client_environment()
"""

from ._errors import ApiError
from ._fake import FakeGcp, LoggedRequest
from ._proxy import RunningFake

__all__ = ["ApiError", "FakeGcp", "LoggedRequest", "RunningFake"]
