"""etcd's administration as the network's operator: access control and membership (ADR 48).

etcd takes a client certificate's common name as its user once its auth is on. The PKI's
operator certificate (CN ``root``, :func:`node.pki.operator_credentials`) is etcd's root; each
agency is a user of its own id whose one role, :data:`~node.etcdlog.ETCD_ROLE`, reads and
writes the network's keys (:func:`~node.etcdlog.network_prefix`) and nothing else. So no
agency's certificate can add or remove members, turn auth off, make users, or touch keys
outside the network's. Calls go over gRPC: etcd's JSON gateway ignores the caller's
certificate once auth is on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import grpc
from aetcd.rpc import auth_pb2
from aetcd.rpc import rpc_pb2 as pb
from aetcd.rpc import rpc_pb2_grpc as pbg

from ledger.errors import LedgerError
from node.etcdlog import ETCD_ROLE, network_prefix, prefix_end, rpc_reason
from node.pki import ETCD_ROOT

__all__ = ["EtcdAdmin", "EtcdAdminError"]

# "unhealthy cluster" (too few members connected for 5 s), and a member busy electing a leader
_AGAIN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class EtcdAdminError(LedgerError):
    """etcd refused or did not answer an administrator's call."""


class EtcdAdmin:
    """The operator's calls to the etcd member at ``url`` (``https://host:port``), with
    ``credentials`` = (CA, operator certificate, operator key) as PEM."""

    def __init__(self, url: str, credentials: tuple[bytes, bytes, bytes], *,
                 timeout: float = 5.0) -> None:
        scheme, _, target = url.partition("://")
        if scheme != "https" or not target:
            raise EtcdAdminError(f"{url!r}: an etcd member's client URL, https://host:port")
        self.url, self.target, self.timeout = url, target.rstrip("/"), timeout
        ca, crt, key = credentials
        self._creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                   certificate_chain=crt)

    def call(self, service: str, method: str, request: Any) -> Any:
        """One call (``service`` e.g. "Cluster", ``method`` e.g. "MemberList"); grpc.RpcError
        as etcd gave it."""
        with grpc.secure_channel(self.target, self._creds,
                                 options=[("grpc.enable_http_proxy", 0)]) as channel:
            stub = getattr(pbg, f"{service}Stub")(channel)
            return getattr(stub, method)(request, timeout=self.timeout)

    def secure(self, network: str, agencies: Iterable[str]) -> None:
        """Turn etcd's auth on with the role, a user per agency and the operator as root."""
        prefix = network_prefix(network).encode()
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=prefix,
                                   range_end=prefix_end(prefix))
        # Each step may have been done by an earlier try cut short (a timeout, Ctrl-C): what
        # exists already is kept, so running it again finishes the job.
        try:
            self._done_if_exists("Auth", "RoleAdd", pb.AuthRoleAddRequest(name=ETCD_ROLE))
            self.call("Auth", "RoleGrantPermission",
                      pb.AuthRoleGrantPermissionRequest(name=ETCD_ROLE, perm=perm))
            for agency in agencies:
                self._user(agency, ETCD_ROLE)
            self._user(ETCD_ROOT, "root")
            self.call("Auth", "AuthEnable", pb.AuthEnableRequest())  # on already: a no-op
        except grpc.RpcError as e:
            raise EtcdAdminError(f"could not turn on etcd's access control at {self.url}: "
                                 f"{rpc_reason(e)}") from e

    def admit(self, agency: str) -> None:
        """Make ``agency`` a user of the nodes' role (finishing one a failed try left). One
        admitted already keeps its user: deleting it first shut a running agency out until
        the next call, and for good if that call failed."""
        try:
            self._user(agency, ETCD_ROLE)
        except grpc.RpcError as e:
            raise EtcdAdminError(f"etcd at {self.url} did not admit {agency}: "
                                 f"{rpc_reason(e)}") from e

    def _user(self, name: str, role: str) -> None:
        self._done_if_exists("Auth", "UserAdd", pb.AuthUserAddRequest(
            name=name, options=auth_pb2.UserAddOptions(no_password=True)))
        self.call("Auth", "UserGrantRole", pb.AuthUserGrantRoleRequest(user=name, role=role))

    def _done_if_exists(self, service: str, method: str, request: Any) -> None:
        try:
            self.call(service, method, request)
        except grpc.RpcError as e:
            if "already exists" not in (e.details() or ""):
                raise

    def members(self) -> dict[str, int]:
        """Name → id of each started etcd member (one added and never started has no name)."""
        return {x.name: int(x.ID) for x in self._member_list() if x.name}

    def listing(self) -> list[tuple[str, int, list[str]]]:
        """(name, id, peer URLs) of every etcd member, those added and never started too
        (named ""): each counts for the quorum."""
        return [(x.name, int(x.ID), list(x.peerURLs)) for x in self._member_list()]

    def leader(self, *, wait: float = 10.0) -> str:
        """The name of the Raft leader's member. Right after the leader's member was taken
        out (or stopped) the others elect one, which takes about a second: asked again for up
        to ``wait`` s (the first answer named a leader no longer listed, or none)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                leader = int(self.call("Maintenance", "Status", pb.StatusRequest()).leader)
            except grpc.RpcError as e:
                if e.code() not in _AGAIN or time.monotonic() > deadline:
                    raise EtcdAdminError(f"etcd at {self.url} did not say its leader: "
                                         f"{rpc_reason(e)}") from e
                time.sleep(0.2)
                continue
            for name, member_id in self.members().items():
                if member_id == leader:
                    return name
            if time.monotonic() > deadline:
                raise EtcdAdminError(f"etcd at {self.url} knows no leader after {wait:g} s "
                                     "(are a quorum of its members running?)")
            time.sleep(0.2)

    def add_member(self, peer_url: str, *, wait: float = 0.0) -> int:
        """Add a member; etcd refuses ("unhealthy cluster") until the member asked has been
        connected to every voting member for 5 s (just after a removal): asked again for
        ``wait`` s. An add that timed out but was applied is found by its peer URL."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return int(self.call("Cluster", "MemberAdd",
                                     pb.MemberAddRequest(peerURLs=[peer_url])).member.ID)
            except grpc.RpcError as e:
                if "exists" in (e.details() or ""):
                    for x in self._member_list():
                        if not x.name and peer_url in x.peerURLs:
                            return int(x.ID)  # ours, from the try that timed out
                if e.code() not in _AGAIN or time.monotonic() > deadline:
                    raise EtcdAdminError(f"etcd at {self.url} refused the new member: "
                                         f"{rpc_reason(e)}") from e
                time.sleep(0.5)

    def _member_list(self) -> list[Any]:
        try:
            return list(self.call("Cluster", "MemberList", pb.MemberListRequest()).members)
        except grpc.RpcError as e:
            raise EtcdAdminError(f"etcd at {self.url} did not list its members: "
                                 f"{rpc_reason(e)}") from e

    def forget(self, agency: str, peer_url: str) -> int:
        """Remove the member etcd still counts for ``agency`` whose data folder is lost: the
        one of that name, or one added at ``peer_url`` and never started (no name yet); how
        many were removed. EtcdAdminError if another agency's member has that peer URL."""
        members = self._member_list()
        for x in members:
            if x.name and x.name != agency and peer_url in x.peerURLs:
                raise EtcdAdminError(f"{peer_url} is the peer URL of {x.name}'s member, not "
                                     f"{agency}'s: nothing was removed")
        ours = [int(x.ID) for x in members
                if x.name == agency or (not x.name and peer_url in x.peerURLs)]
        for member_id in ours:
            self.remove_member(member_id)
        return len(ours)

    def rejoin(self, agency: str, peer_url: str) -> int:
        """Make room for ``agency``'s member whose data folder is lost: :meth:`forget` it and
        add it again at ``peer_url``; the new member's id. Start it then with an empty data
        folder (`ledger-node etcd run` with the --initial-cluster `etcd rejoin` prints): it
        copies the others' data. Refused when etcd counts no member of ``agency`` (taken out,
        or a misspelt name: adding one that never starts would raise the quorum for nothing).
        With two or more members lost, :meth:`forget` each first: etcd adds none while a
        voting member is down."""
        if not self.forget(agency, peer_url):
            raise EtcdAdminError(
                f"etcd counts no member of {agency!r} (taken out, or another name?): nothing "
                "to rejoin. If an earlier rejoin removed it already, add it with `etcdctl "
                f"member add {agency} --peer-urls={peer_url}`")
        return self.add_member(peer_url, wait=30.0)

    def remove_member(self, member_id: int, *, wait: float = 30.0) -> None:
        """Remove a member. etcd refuses ("unhealthy cluster") while fewer members than the
        quorum after the removal have been connected for 5 s: asked again for ``wait`` s."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.call("Cluster", "MemberRemove", pb.MemberRemoveRequest(ID=member_id))
                return
            except grpc.RpcError as e:
                if e.code() not in _AGAIN or time.monotonic() > deadline:
                    raise EtcdAdminError(f"etcd at {self.url} did not remove member "
                                         f"{member_id:x}: {rpc_reason(e)}") from e
                time.sleep(0.5)

    def take_out(self, agency: str) -> bool:
        """Shut ``agency`` out: its user goes (refused at once, even on connections it holds;
        nothing to do where auth is off) and its member leaves the Raft cluster. False when
        etcd had neither (taken out before, or a misspelt name): nothing was changed."""
        user = True
        try:
            self.call("Auth", "UserDelete", pb.AuthUserDeleteRequest(name=agency))
        except grpc.RpcError as e:
            if "user name not found" not in (e.details() or ""):
                raise EtcdAdminError(f"etcd at {self.url} did not delete the user {agency}: "
                                     f"{rpc_reason(e)}") from e
            user = False
        member_id = self.members().get(agency)
        if member_id is not None:  # none: removed by an earlier call
            try:
                self.remove_member(member_id)
            except EtcdAdminError as e:  # half done: said, and how to finish
                raise EtcdAdminError(
                    f"{agency}'s etcd user is deleted (it reaches no key), but its member is "
                    f"still in the Raft cluster: {e}. Run the same again once the other "
                    "members run (etcd removes no member that would leave too few started "
                    "ones, nor the last)") from e
        return user or member_id is not None
