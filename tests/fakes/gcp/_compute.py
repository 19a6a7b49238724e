"""Compute Engine v1, in memory: the resources the infra play manages and their operations.

Resources come back as GCE returns them: full URLs for every reference, numeric string ids,
`selfLink`, server-filled defaults (scheduling, networkTier, status, fingerprints), allocated
`natIP`/`networkIP`, and `users` on addresses and disks. GCE's own refusals are kept where a play
could trip on them: guest accelerators without `onHostMaintenance: TERMINATE`, a static IP that is
not reserved or already used, deleting a network that still has subnetworks, an address or disk
that is in use.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ApiError, already_exists, in_use, invalid, not_found

BASE = "https://compute.googleapis.com/compute/v1/"
TIMESTAMP = "2026-11-27T12:00:00.000-08:00"
_KINDS = {
    "networks": "network",
    "subnetworks": "subnetwork",
    "addresses": "address",
    "firewalls": "firewall",
    "disks": "disk",
    "instances": "instance",
}


def full_url(project: str, ref: str) -> str:
    """GCE accepts full and partial URLs for references and always answers with full ones."""
    if ref.startswith("https://"):
        return ref
    if ref.startswith("projects/"):
        return BASE + ref
    return f"{BASE}projects/{project}/{ref}"


def rel(url: str) -> str:
    return url.removeprefix(BASE)


@dataclass
class Operation:
    body: dict[str, Any]
    on_done: Callable[[], None] | None = None
    error: dict[str, Any] | None = None
    polls: int = 0

    def advance(self) -> dict[str, Any]:
        """PENDING, then RUNNING, then DONE: one step per poll, as a busy GCE can answer."""
        self.polls += 1
        if self.body["status"] == "PENDING":
            self.body.update(status="RUNNING", progress=50, startTime=TIMESTAMP)
        elif self.body["status"] == "RUNNING":
            self.body.update(status="DONE", progress=100, endTime=TIMESTAMP)
            if self.error is not None:
                self.body["error"] = self.error
                self.body["httpErrorStatusCode"] = 403
                self.body["httpErrorMessage"] = "FORBIDDEN"
            elif self.on_done is not None:
                self.on_done()
        return copy.deepcopy(self.body)


@dataclass
class ComputeState:
    """Everything the fake compute API holds, keyed by the resource's path below BASE."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    # Set by a test to make the next matching operation end in an error (e.g. QUOTA_EXCEEDED).
    operation_faults: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000000000000000001))
    _external_ips: itertools.count = field(default_factory=lambda: itertools.count(10))
    # External IPs are <prefix>10, <prefix>11, ...
    external_ip_prefix: str = "34.123.45."
    # Optional: instances that boot (_hosts.PodmanHosts): boot(vm) once an insert is DONE,
    # remove(vm) when the instance is deleted.
    hosts: Any = None

    def next_id(self) -> str:
        return str(next(self._ids))

    def next_external_ip(self) -> str:
        return f"{self.external_ip_prefix}{next(self._external_ips)}"

    def of_kind(self, plural: str) -> list[dict[str, Any]]:
        return [r for path, r in self.resources.items() if path.split("/")[-2] == plural]


class Compute:
    def __init__(self, state: ComputeState) -> None:
        self.state = state

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        _, collection, verb = method_id.split(".")
        if collection.endswith("Operations"):
            return self._operation(params)
        if collection not in _KINDS:
            raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")
        scope = _scope(params)
        parent = f"projects/{params['project']}/{scope}{collection}"
        handler = getattr(self, f"_{verb}", None)
        if handler is None:
            raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")
        return handler(collection, parent, params, query, body)

    # --- generic verbs ---------------------------------------------------------------------------

    def _get(self, collection: str, parent: str, params: dict[str, str], *_: Any) -> dict[str, Any]:
        path = f"{parent}/{params[_name_param(collection)]}"
        if path not in self.state.resources:
            raise not_found(path)
        return copy.deepcopy(self.state.resources[path])

    def _list(self, collection: str, parent: str, *_: Any) -> dict[str, Any]:
        items = [copy.deepcopy(r) for p, r in self.state.resources.items() if p.rsplit("/", 1)[0] == parent]
        answer: dict[str, Any] = {
            "kind": f"compute#{_KINDS[collection]}List",
            "id": parent,
            "selfLink": BASE + parent,
        }
        if items:
            answer["items"] = items
        return answer

    def _aggregatedList(
        self, collection: str, parent: str, params: dict[str, str], query: dict[str, list[str]], *_: Any
    ) -> dict[str, Any]:
        project = params["project"]
        match = _filter(query.get("filter", [""])[0])
        scopes: dict[str, dict[str, Any]] = {}
        for path, resource in self.state.resources.items():
            parts = path.split("/")
            if parts[1] == project and parts[-2] == collection and match(resource):
                scope = scopes.setdefault("/".join(parts[2:4]), {collection: []})
                scope[collection].append(copy.deepcopy(resource))
        return {
            "kind": f"compute#{_KINDS[collection]}AggregatedList",
            "id": f"projects/{project}/aggregated/{collection}",
            "items": scopes,
            "selfLink": f"{BASE}projects/{project}/aggregated/{collection}",
        }

    def _insert(
        self, collection: str, parent: str, params: dict[str, str], _q: Any, body: Any
    ) -> dict[str, Any]:
        path = f"{parent}/{body['name']}"
        if path in self.state.resources:
            raise already_exists(path)
        project = params["project"]
        resource = copy.deepcopy(body)
        resource.update(
            kind=f"compute#{_KINDS[collection]}",
            id=self.state.next_id(),
            creationTimestamp=TIMESTAMP,
            selfLink=BASE + path,
        )
        if "region" in params:
            resource["region"] = f"{BASE}projects/{project}/regions/{params['region']}"
        if "zone" in params:
            resource["zone"] = f"{BASE}projects/{project}/zones/{params['zone']}"
        on_done = getattr(self, f"_fill_{collection}")(project, params, resource)
        _drop_empty_lists(resource)
        self.state.resources[path] = resource
        return self._new_operation("insert", params, resource, on_done)

    def _delete(self, collection: str, parent: str, params: dict[str, str], *_: Any) -> dict[str, Any]:
        path = f"{parent}/{params[_name_param(collection)]}"
        resource = self.state.resources.get(path)
        if resource is None:
            raise not_found(path)
        getattr(self, f"_release_{collection}", lambda _r: None)(resource)
        del self.state.resources[path]
        return self._new_operation("delete", params, resource, None)

    def _patch(
        self, collection: str, parent: str, params: dict[str, str], _q: Any, body: Any
    ) -> dict[str, Any]:
        if collection != "firewalls":
            raise ApiError(501, f"the fake does not implement compute.{collection}.patch", "notImplemented")
        path = f"{parent}/{params['firewall']}"
        resource = self.state.resources.get(path)
        if resource is None:
            raise not_found(path)
        if body.get("name", resource["name"]) != resource["name"]:
            raise invalid("Firewall name cannot be changed")
        patched = {**resource, **{k: v for k, v in body.items() if v is not None}}
        self._fill_firewalls(params["project"], params, patched)
        self.state.resources[path] = patched
        return self._new_operation("patch", params, patched, None)

    def _operation(self, params: dict[str, str]) -> dict[str, Any]:
        path = f"projects/{params['project']}/{_scope(params)}operations/{params['operation']}"
        op = self.state.operations.get(path)
        if op is None:
            raise not_found(path)
        return op.advance()

    def _new_operation(
        self, kind: str, params: dict[str, str], resource: dict[str, Any], on_done: Callable[[], None] | None
    ) -> dict[str, Any]:
        project = params["project"]
        name = (
            f"operation-{self.state.next_id()}-{hashlib.sha1(resource['selfLink'].encode()).hexdigest()[:12]}"
        )
        path = f"projects/{project}/{_scope(params)}operations/{name}"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self.state.next_id(),
            "name": name,
            "operationType": kind,
            "targetLink": resource["selfLink"],
            "targetId": resource["id"],
            "status": "PENDING",
            "user": "canary@example.com",
            "progress": 0,
            "insertTime": TIMESTAMP,
            "selfLink": BASE + path,
        }
        for key in ("zone", "region"):
            if key in params:
                body[key] = f"{BASE}projects/{project}/{key}s/{params[key]}"
        error = None
        for i, (target, fault) in enumerate(self.state.operation_faults):
            if target == resource["selfLink"].rsplit("/", 2)[-2] and kind == "insert":
                error = fault
                del self.state.operation_faults[i]
                break
        self.state.operations[path] = Operation(body, on_done, error)
        return copy.deepcopy(body)

    # --- per-kind server behaviour ---------------------------------------------------------------

    def _fill_networks(self, project: str, params: dict[str, str], net: dict[str, Any]) -> None:
        net.setdefault("autoCreateSubnetworks", True)
        net.setdefault("routingConfig", {"routingMode": "REGIONAL"})
        net.setdefault("networkFirewallPolicyEnforcementOrder", "AFTER_CLASSIC_FIREWALL")
        net.setdefault("mtu", 1460)

    def _release_networks(self, net: dict[str, Any]) -> None:
        for users_kind in ("subnetworks", "firewalls", "instances"):
            for other in self.state.of_kind(users_kind):
                if other.get("network") == net["selfLink"] or any(
                    nic.get("network") == net["selfLink"] for nic in other.get("networkInterfaces", [])
                ):
                    raise in_use(rel(net["selfLink"]), rel(other["selfLink"]))

    def _fill_subnetworks(self, project: str, params: dict[str, str], subnet: dict[str, Any]) -> None:
        subnet["network"] = self._existing(project, subnet.get("network", ""), "network")
        try:
            cidr = ipaddress.ip_network(subnet.get("ipCidrRange", ""))
        except ValueError as err:
            raise invalid(
                f"Invalid value for field 'resource.ipCidrRange': '{subnet.get('ipCidrRange')}'."
            ) from err
        subnet.update(
            gatewayAddress=str(next(cidr.hosts())),
            fingerprint=_fingerprint(subnet),
            stackType=subnet.get("stackType", "IPV4_ONLY"),
            privateIpGoogleAccess=subnet.get("privateIpGoogleAccess", False),
            purpose=subnet.get("purpose", "PRIVATE"),
        )
        network = self.state.resources[rel(subnet["network"])]
        network.setdefault("subnetworks", []).append(subnet["selfLink"])

    def _release_subnetworks(self, subnet: dict[str, Any]) -> None:
        for other in self.state.of_kind("addresses") + self.state.of_kind("instances"):
            if other.get("subnetwork") == subnet["selfLink"] or any(
                nic.get("subnetwork") == subnet["selfLink"] for nic in other.get("networkInterfaces", [])
            ):
                raise in_use(rel(subnet["selfLink"]), rel(other["selfLink"]))
        network = self.state.resources.get(rel(subnet["network"]), {})
        network.get("subnetworks", []).remove(subnet["selfLink"])

    def _fill_addresses(self, project: str, params: dict[str, str], addr: dict[str, Any]) -> None:
        addr.setdefault("addressType", "EXTERNAL")
        addr.update(status="RESERVED", labelFingerprint=_fingerprint(addr.get("labels", {})))
        if addr["addressType"] == "EXTERNAL":
            if "subnetwork" in addr:
                raise invalid("An external address cannot have a subnetwork.")
            addr.setdefault("networkTier", "PREMIUM")
            addr.setdefault("address", self.state.next_external_ip())
            return
        addr["subnetwork"] = self._existing(project, addr.get("subnetwork", ""), "subnetwork")
        addr.setdefault("purpose", "GCE_ENDPOINT")
        cidr = ipaddress.ip_network(self.state.resources[rel(addr["subnetwork"])]["ipCidrRange"])
        taken = {a.get("address") for a in self.state.of_kind("addresses")} | {
            nic.get("networkIP") for i in self.state.of_kind("instances") for nic in i["networkInterfaces"]
        }
        if "address" in addr:
            if ipaddress.ip_address(addr["address"]) not in cidr:
                raise invalid(
                    f"Requested internal IP address {addr['address']} is outside the subnetwork range {cidr}."
                )
            if addr["address"] in taken:
                raise ApiError(
                    409, f"IP '{addr['address']}' is already being used by another resource.", "alreadyExists"
                )
        else:
            # GCE keeps the first two and the last two addresses of a range for itself.
            addr["address"] = next(str(h) for h in list(cidr.hosts())[1:-1] if str(h) not in taken)

    def _release_addresses(self, addr: dict[str, Any]) -> None:
        if addr.get("users"):
            raise in_use(rel(addr["selfLink"]), rel(addr["users"][0]))

    def _fill_firewalls(self, project: str, params: dict[str, str], rule: dict[str, Any]) -> None:
        rule["network"] = self._existing(project, rule.get("network", "global/networks/default"), "network")
        rule.setdefault("direction", "INGRESS")
        rule.setdefault("priority", 1000)
        rule.setdefault("disabled", False)
        rule.setdefault("logConfig", {"enable": False})
        for cidr in rule.get("sourceRanges", []) + rule.get("destinationRanges", []):
            try:
                ipaddress.ip_network(cidr)
            except ValueError as err:
                raise invalid(
                    f"Invalid value for field 'resource.sourceRanges': '{cidr}'. "
                    "Must be a CIDR address range."
                ) from err
        if not rule.get("allowed") and not rule.get("denied"):
            raise invalid("Required field 'resource.allowed' or 'resource.denied' not specified")

    def _fill_disks(self, project: str, params: dict[str, str], disk: dict[str, Any]) -> None:
        disk["type"] = full_url(project, disk.get("type", f"zones/{params['zone']}/diskTypes/pd-standard"))
        if f"/zones/{params['zone']}/diskTypes/" not in disk["type"]:
            raise invalid(
                f"Invalid value for field 'resource.type': '{disk['type']}'. "
                f"Disk type must be in zone {params['zone']}."
            )
        disk["sizeGb"] = str(disk.get("sizeGb", "10"))
        disk.update(
            status="READY",
            labelFingerprint=_fingerprint(disk.get("labels", {})),
            physicalBlockSizeBytes="4096",
        )
        if "sourceImage" in disk:
            disk["sourceImage"] = full_url(project, disk["sourceImage"])
            disk["sourceImageId"] = self.state.next_id()

    def _release_disks(self, disk: dict[str, Any]) -> None:
        if disk.get("users"):
            raise in_use(rel(disk["selfLink"]), rel(disk["users"][0]))

    def _fill_instances(self, project: str, params: dict[str, str], vm: dict[str, Any]) -> Callable[[], None]:
        zone = params["zone"]
        region = zone.rsplit("-", 1)[0]
        vm["machineType"] = full_url(project, vm.get("machineType", ""))
        if f"/zones/{zone}/machineTypes/" not in vm["machineType"]:
            raise invalid(
                f"Invalid value for field 'resource.machineType': '{vm['machineType']}'. "
                f"Machine type must be in zone {zone}."
            )
        scheduling = {
            "onHostMaintenance": "MIGRATE",
            "automaticRestart": True,
            "preemptible": False,
            "provisioningModel": "STANDARD",
        }
        scheduling.update(vm.get("scheduling", {}))
        vm["scheduling"] = scheduling
        accelerators = vm.get("guestAccelerators", [])
        for acc in accelerators:
            acc["acceleratorType"] = full_url(project, acc["acceleratorType"])
            if f"/zones/{zone}/acceleratorTypes/" not in acc["acceleratorType"]:
                raise invalid(
                    f"Invalid value for field 'resource.guestAccelerators': "
                    f"accelerator type must be in zone {zone}."
                )
        if accelerators and scheduling["onHostMaintenance"] != "TERMINATE":
            raise invalid(
                "Instances with guest accelerators do not support live migration.",
                "instancesWithGuestAcceleratorsDoNotSupportLiveMigration",
            )
        if not vm.get("networkInterfaces"):
            raise invalid("Required field 'resource.networkInterfaces' not specified")
        claims: list[dict[str, Any]] = []
        for i, nic in enumerate(vm["networkInterfaces"]):
            self._fill_nic(project, region, nic, i, claims)
        disks = vm.get("disks", [])
        if sum(1 for d in disks if d.get("boot")) != 1:
            raise invalid("Exactly one boot disk must be specified.")
        attached = [self._attach_disk(project, params, vm, d, i) for i, d in enumerate(disks)]
        vm["disks"] = attached
        for key, default in (("metadata", {}), ("tags", {})):
            vm[key] = {**vm.get(key, default), "fingerprint": _fingerprint(vm.get(key, default))}
        vm["metadata"]["kind"] = "compute#metadata"
        vm.update(
            status="PROVISIONING",
            cpuPlatform="Intel Broadwell",
            labelFingerprint=_fingerprint(vm.get("labels", {})),
            fingerprint=_fingerprint(vm["name"]),
            canIpForward=vm.get("canIpForward", False),
            deletionProtection=vm.get("deletionProtection", False),
            startRestricted=False,
        )
        for claim in claims:
            claim.update(status="IN_USE", users=[vm["selfLink"]])

        def running() -> None:
            vm.update(status="RUNNING", lastStartTimestamp=TIMESTAMP)
            if self.state.hosts is not None:
                self.state.hosts.boot(copy.deepcopy(vm))

        return running

    def _fill_nic(
        self, project: str, region: str, nic: dict[str, Any], index: int, claims: list[dict[str, Any]]
    ) -> None:
        subnet_url = self._existing(project, nic.get("subnetwork", ""), "subnetwork")
        subnet = self.state.resources[rel(subnet_url)]
        if f"/regions/{region}/" not in subnet_url:
            raise invalid(f"Subnetwork '{rel(subnet_url)}' is not in region {region}.")
        nic.update(
            kind="compute#networkInterface",
            name=f"nic{index}",
            subnetwork=subnet_url,
            network=subnet["network"],
            fingerprint=_fingerprint(nic),
            stackType="IPV4_ONLY",
        )
        internal = [
            a
            for a in self.state.of_kind("addresses")
            if a["addressType"] == "INTERNAL" and a.get("subnetwork") == subnet_url
        ]
        if "networkIP" in nic:
            reserved = next((a for a in internal if a["address"] == nic["networkIP"]), None)
            if ipaddress.ip_address(nic["networkIP"]) not in ipaddress.ip_network(subnet["ipCidrRange"]):
                raise invalid(
                    f"Requested internal IP address {nic['networkIP']} is outside the subnetwork range."
                )
            if reserved is not None:
                if reserved.get("users"):
                    raise in_use(rel(reserved["selfLink"]), rel(reserved["users"][0]))
                claims.append(reserved)
        else:
            taken = {a["address"] for a in internal}
            nic["networkIP"] = next(
                str(h)
                for h in list(ipaddress.ip_network(subnet["ipCidrRange"]).hosts())[1:-1]
                if str(h) not in taken
            )
        for config in nic.get("accessConfigs", []):
            config.update(kind="compute#accessConfig", type=config.get("type", "ONE_TO_ONE_NAT"))
            config.setdefault("name", "External NAT")
            config.setdefault("networkTier", "PREMIUM")
            if "natIP" not in config:
                config["natIP"] = self.state.next_external_ip()
                continue
            reserved = next(
                (
                    a
                    for a in self.state.of_kind("addresses")
                    if a["address"] == config["natIP"] and a["addressType"] == "EXTERNAL"
                ),
                None,
            )
            if reserved is None or f"/regions/{region}/" not in reserved["selfLink"]:
                raise invalid(
                    f"Invalid value for field 'resource.networkInterfaces[{index}].accessConfigs[0].natIP': "
                    f"'{config['natIP']}'. The specified external IP address '{config['natIP']}' "
                    f"was not found in region '{region}'."
                )
            if reserved.get("users"):
                raise invalid(
                    f"IP address '{config['natIP']}' is already being used by another resource.",
                    "ipInUseByAnotherResource",
                )
            claims.append(reserved)

    def _attach_disk(
        self, project: str, params: dict[str, str], vm: dict[str, Any], spec: dict[str, Any], index: int
    ) -> dict[str, Any]:
        zone = params["zone"]
        init = spec.get("initializeParams")
        if init is not None:
            name = init.get("diskName", vm["name"] if spec.get("boot") else f"{vm['name']}-{index}")
            disk_body = {
                "name": name,
                "sizeGb": init.get("diskSizeGb", "10"),
                "labels": init.get("labels", {}),
            }
            if "sourceImage" in init:
                disk_body["sourceImage"] = init["sourceImage"]
            if "diskType" in init:
                disk_body["type"] = init["diskType"]
            self._insert("disks", f"projects/{project}/zones/{zone}/disks", params, None, disk_body)
            source = f"{BASE}projects/{project}/zones/{zone}/disks/{name}"
        else:
            source = self._existing(project, spec.get("source", ""), "disk")
        disk = self.state.resources[rel(source)]
        if disk.get("users"):
            raise in_use(rel(source), rel(disk["users"][0]))
        disk["users"] = [vm["selfLink"]]
        return {
            "kind": "compute#attachedDisk",
            "type": "PERSISTENT",
            "mode": spec.get("mode", "READ_WRITE"),
            "source": source,
            "deviceName": spec.get("deviceName", f"persistent-disk-{index}"),
            "index": index,
            "boot": spec.get("boot", False),
            "autoDelete": spec.get("autoDelete", init is not None),
            "interface": spec.get("interface", "SCSI"),
            "diskSizeGb": disk["sizeGb"],
        }

    def _release_instances(self, vm: dict[str, Any]) -> None:
        if self.state.hosts is not None:
            self.state.hosts.remove(vm)
        for addr in self.state.of_kind("addresses"):
            if addr.get("users") == [vm["selfLink"]]:
                addr["status"] = "RESERVED"
                del addr["users"]
        for attached in vm["disks"]:
            disk = self.state.resources[rel(attached["source"])]
            del disk["users"]
            if attached["autoDelete"]:
                del self.state.resources[rel(attached["source"])]

    def _existing(self, project: str, ref: str, kind: str) -> str:
        if not ref:
            raise invalid(f"Required field 'resource.{kind}' not specified")
        url = full_url(project, ref)
        if rel(url) not in self.state.resources:
            raise not_found(rel(url))
        return url


_CLAUSE = re.compile(r"^\(?\s*([\w.]+)\s*(=|!=|eq|ne)\s*\"?([^\")]*)\"?\s*\)?$")


def _filter(expression: str) -> Callable[[dict[str, Any]], bool]:
    """GCE's list filter, the part clients use: `field = value` clauses, ANDed, `(a) (b)`."""
    clauses = []
    for text in re.split(r"\)\s+(?:AND\s+)?\(", expression.strip()) if expression.strip() else []:
        found = _CLAUSE.match(text.strip())
        if found is None:
            raise invalid(
                f"Invalid value for field 'filter': '{expression}'. Invalid list filter expression."
            )
        clauses.append(found.groups())

    def matches(resource: dict[str, Any]) -> bool:
        for field_path, op, value in clauses:
            actual: Any = resource
            for key in field_path.split("."):
                actual = actual.get(key) if isinstance(actual, dict) else None
            if (str(actual) == value) != (op in ("=", "eq")):
                return False
        return True

    return matches


def _scope(params: dict[str, str]) -> str:
    if "zone" in params:
        return f"zones/{params['zone']}/"
    if "region" in params:
        return f"regions/{params['region']}/"
    return "global/"


def _name_param(collection: str) -> str:
    return _KINDS[collection]


def _fingerprint(value: Any) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:11] + "="


def _drop_empty_lists(value: Any) -> None:
    """GCE's JSON leaves out repeated fields that are empty."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v == []]:
            del value[key]
        for item in value.values():
            _drop_empty_lists(item)
    elif isinstance(value, list):
        for item in value:
            _drop_empty_lists(item)
