"""The validated shape of hosts.yml: frozen pydantic models, parsed once.

Names that later reach shell commands, compose files or HAProxy configs (host names, the cluster
name, label keys, users) are constrained here by pattern, never escaped late.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    StringConstraints,
    Tag,
    field_validator,
)

Role = Literal["frontend", "action", "lb", "mongo", "postgres", "redis", "train"]
ROLES: tuple[Role, ...] = ("frontend", "action", "lb", "mongo", "postgres", "redis", "train")

# Every constrained text says what it expects; the loader's messages take it from here.
MEANINGS: dict[str, str] = {}


def _text(pattern: str, meaning: str) -> StringConstraints:
    MEANINGS[pattern] = meaning
    return StringConstraints(pattern=pattern)


Name = Annotated[
    str,
    _text(
        r"^[a-z][a-z0-9-]{0,30}$",
        "a name of lower-case letters, digits and '-', starting with a letter, at most 31 "
        "characters",
    ),
]
LabelKey = Annotated[
    str,
    _text(
        r"^[a-z][a-z0-9_.-]{0,62}$", "a label key of lower-case letters, digits, '_', '.' and '-'"
    ),
]
LabelValue = Annotated[
    str,
    _text(
        r"^[A-Za-z0-9_.:/-]{0,128}$", "a label value of letters, digits and _ . : / - (at most 128)"
    ),
]
UnixUser = Annotated[
    str,
    _text(r"^[a-z_][a-z0-9_-]{0,31}$", "a user name of lower-case letters, digits, '_' and '-'"),
]
Port = Annotated[int, Field(ge=1, le=65535)]
Replicas = Annotated[int, Field(ge=1, le=10_000)]
# A path on the hosts: absolute, no '..', only characters that are safe in compose and shells.
HostPath = Annotated[
    str,
    _text(
        r"^/(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_./@+-]*$",
        "an absolute path without '..', of letters, digits and _ . / @ + -",
    ),
]
RelativePath = Annotated[
    str,
    _text(
        r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_./@+-]+$",
        "a relative path inside the project, without '..', of letters, digits and _ . / @ + -",
    ),
]
# registry/repo:tag or repo@sha256:digest; a bare name would silently mean ':latest'.
ImageRef = Annotated[
    str,
    _text(
        r"^[a-z0-9][a-z0-9._/-]*(:[0-9]+)?[a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$",
        "an image with a tag or a digest, like rasa/rasa:3.6.21-full",
    ),
]
DockerHost = Annotated[
    str,
    _text(
        r"^(ssh://[A-Za-z0-9_.@:\[\]-]+|unix:///[A-Za-z0-9_./-]+|tcp://[A-Za-z0-9_.:\[\]-]+)$",
        "ssh://user@host[:port], unix:///path/to/docker.sock or tcp://host:port",
    ),
]
Memory = Annotated[str, _text(r"^[1-9][0-9]*[kmg]$", "a size like 512m or 2g")]
NetworkHost = Annotated[str, _text(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", "a host name or IP address")]
MountOptions = Annotated[str, _text(r"^[A-Za-z0-9_=.,-]+$", "mount options like nfsvers=4,ro")]
Interface = Annotated[str, _text(r"^[A-Za-z0-9_.@-]{1,15}$", "a network interface name like eth0")]
# A bot's name reaches container, backend, collection and lock-key names: letters and digits.
BotName = Annotated[
    str, _text(r"^[a-z][a-z0-9]{0,15}$", "a bot name of lower-case letters and digits, like de")
]
AppId = Annotated[str, _text(r"^[A-Za-z0-9_.-]{1,64}$", "an APP_ID of letters, digits, _ . -")]
# A language tag as clients send it: de, de-AT, pt_BR.
Locale = Annotated[
    str, _text(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", "a language tag like de or de-AT")
]
ActionName = Annotated[
    str, _text(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$", "a Rasa action name like action_hours")
]


class Model(BaseModel):
    # python-re: the path patterns need look-ahead (no ".." segments).
    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")


class Ssh(Model):
    user: UnixUser = "root"
    port: Port = 22
    identity_file: str | None = None
    # An ssh_config file for this host (`ssh -F`): jump hosts, known_hosts, keys.
    config_file: str | None = None


class Host(Model):
    address: IPvAnyAddress
    ssh: Ssh = Ssh()
    docker_host: DockerHost | None = None
    roles: Annotated[tuple[Role, ...], Field(min_length=1)]
    labels: dict[LabelKey, LabelValue] = {}

    @field_validator("roles")
    @classmethod
    def _roles_once(cls, roles: tuple[Role, ...]) -> tuple[Role, ...]:
        repeated = sorted({role for role in roles if roles.count(role) > 1})
        if repeated:
            raise ValueError(f"role listed twice: {', '.join(repeated)}")
        return roles

    def docker_url(self) -> str:
        """Where this host's Docker engine answers: `docker_host`, else SSH to the address."""
        if self.docker_host:
            return self.docker_host
        address = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        port = "" if self.ssh.port == 22 else f":{self.ssh.port}"
        return f"ssh://{self.ssh.user}@{address}{port}"


class Nfs(Model):
    server: NetworkHost
    export: HostPath
    options: MountOptions = "nfsvers=4"


class Project(Model):
    path: HostPath
    # Default: the `actions` folder inside the project.
    actions: HostPath | None = None
    nfs: Nfs | None = None

    def actions_path(self) -> str:
        """The rasa-sdk actions package on the hosts."""
        return self.actions or f"{self.path.rstrip('/')}/actions"


class Images(Model):
    rasa: ImageRef = "rasa/rasa:3.6.21-full"
    actions: ImageRef = "rasa/rasa-sdk:3.6.2"
    haproxy: ImageRef = "haproxy:2.8"
    mongo: ImageRef = "mongo:7.0"
    postgres: ImageRef = "postgres:15"
    # No official image: `syrcad images build` makes it from Debian's keepalived.
    keepalived: ImageRef = "syrcad/keepalived:2.2"
    # Prometheus and its blackbox exporter in one image (the official ones are two).
    prometheus: ImageRef = "syrcad/prometheus:2.42"
    redis: ImageRef = "redis:7.2"


class Resources(Model):
    cpus: Annotated[float, Field(gt=0, le=1024)] | None = None
    memory: Memory | None = None


class FrontendService(Model):
    replicas: Replicas = 2
    base_port: Port = 5005
    sanic_workers: Annotated[int, Field(ge=1, le=64)] = 1
    model: RelativePath = "models"
    # Requests one Rasa process works on at once (times sanic_workers per replica); the rest wait
    # in HAProxy's one queue, where any replica that frees up takes the next (shorter tails than
    # queueing inside a busy Rasa process, whose tracker store calls block its event loop).
    # 1 never measured better than 2 on the sample bot (bench/results/); 2 also lets a process go
    # on with another request while a turn awaits an action server, which real bots make slow.
    maxconn: Annotated[int, Field(ge=1, le=10_000)] = 2
    # leastconn: every request to the least busy replica (any replica can serve any turn: shared
    # tracker and lock store). sender: hash the JSON sender so a conversation stays on one
    # replica while it is up, for the stock lock store (stores.lock.atomic: false).
    balance: Literal["leastconn", "sender"] = "leastconn"
    resources: Resources = Resources()


class ActionService(Model):
    replicas: Replicas = 2
    base_port: Port = 5055
    resources: Resources = Resources()
    # Actions safe to run twice (a lookup, an upsert keyed by the conversation): a call lost with
    # its server is made again on another. Any other lost call fails its message with a 502.
    idempotent: tuple[ActionName, ...] = ()


class RateLimit(Model):
    # Per client address (not for trusted sources), and per conversation (the JSON sender, the
    # socket.io session): requests within period_s, beyond which a 429 says when to come back.
    requests: Annotated[int, Field(ge=1)] = 300
    per_conversation: Annotated[int, Field(ge=1)] = 60
    period_s: Annotated[int, Field(ge=1, le=3600)] = 10


class Tls(Model):
    """TLS on the public LB: a PEM file on this machine holding the certificate chain and key."""

    certificate: str
    port: Port = 443


class LbService(Model):
    public_port: Port = 80
    api_port: Port = 8005
    action_port: Port = 8055
    stats_port: Port = 8404
    action_stats_port: Port = 8405
    # Inference plus action calls; Rasa's own default action timeout is 10 s per call.
    timeout_s: Annotated[int, Field(ge=1, le=3600)] = 60
    rate_limit: RateLimit = RateLimit()
    # Addresses that carry many users (a messaging platform's webhooks, a corporate proxy): not
    # limited as one client. Their X-Forwarded-For names the client, which is then limited.
    trusted_sources: tuple[IPvAnyNetwork, ...] = ()
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 64 * 1024
    tls: Tls | None = None
    # Two or more `lb` hosts share this address (keepalived, VRRP): clients and the frontends
    # use it, and whichever LB host holds it serves.
    virtual_address: IPvAnyAddress | None = None
    interface: Interface = "eth0"  # where the LB hosts hold the virtual address
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = 51  # unique on that network


class ModelServer(Model):
    """Serves each bot's newest trained model over HTTP to the frontends of the bots that pull
    theirs (`bots.NAME.pull_models`); runs only when one does."""

    host: Name | None = None  # default: the first host with the role train, else frontend
    port: Port = 8075  # on the host's cluster address
    # How often each frontend process asks for a newer model (Rasa's wait_time_between_pulls).
    pull_every_s: Annotated[int, Field(ge=1, le=3600)] = 10


class Services(Model):
    frontend: FrontendService = FrontendService()
    action: ActionService = ActionService()
    lb: LbService = LbService()
    model_server: ModelServer = ModelServer()


class BotFrontend(Model):
    """A bot's own frontend settings; each key left out is taken from services.frontend. Host
    ports follow the previous bot's (services.frontend.base_port for the first)."""

    replicas: Replicas | None = None
    sanic_workers: Annotated[int, Field(ge=1, le=64)] | None = None
    model: RelativePath | None = None
    maxconn: Annotated[int, Field(ge=1, le=10_000)] | None = None
    balance: Literal["leastconn", "sender"] | None = None
    resources: Resources | None = None


class BotActions(Model):
    """A bot's own action servers: its own rasa-sdk package, in a pool of its own behind the
    action LB. Each key left out is taken from services.action; host ports follow the pool
    before it (services.action.base_port for the first)."""

    path: HostPath  # the bot's actions package on every host
    replicas: Replicas | None = None
    resources: Resources | None = None
    idempotent: tuple[ActionName, ...] | None = None


class BotRoutes(Model):
    """How a request names this bot on the public LB, besides the path /bots/NAME/..."""

    app_ids: tuple[AppId, ...] = ()  # header X-App-Id or query ?app_id=
    hosts: tuple[NetworkHost, ...] = ()  # the Host the client asked for
    # The language of the JSON body's metadata.locale, else the first of Accept-Language:
    # "de" takes de, de-AT, de_CH; "de-AT" takes only de-AT.
    locales: tuple[Locale, ...] = ()


class Bot(Model):
    # The bot's Rasa project (config, domain, data, models) on every host; default project.path.
    path: HostPath | None = None
    frontend: BotFrontend = BotFrontend()
    # shared: the cluster's action servers (project.actions, services.action); or a pool of
    # the bot's own.
    actions: Literal["shared"] | BotActions = "shared"
    # Where its frontends (and its own action servers) run: these of the hosts with the role;
    # default every one.
    hosts: tuple[Name, ...] = ()
    # true: its frontends pull the newest model from the model server (services.model_server)
    # by themselves, instead of loading it from the shared folder when they start.
    pull_models: bool = False
    routes: BotRoutes = BotRoutes()
    # Requests that name no bot go here; without a default bot they get a 404.
    default: bool = False


class MongoTracker(Model):
    type: Literal["mongo"] = "mongo"
    port: Port = 27017
    database: Name = "rasa"
    username: UnixUser = "rasa"
    replica_set: Name | None = None


class PostgresTracker(Model):
    """PostgreSQL: syrcad runs it on the host with the `postgres` role and creates the database
    and user; with `host`, it is an existing server that syrcad connects to and leaves alone."""

    type: Literal["postgres"]
    host: NetworkHost | None = None
    port: Port = 5432
    database: Name = "rasa"
    username: UnixUser = "rasa"


class RedisLock(Model):
    type: Literal["redis"] = "redis"
    port: Port = 6379
    db: Annotated[int, Field(ge=0, le=15)] = 1
    # syrcad's lock store issues tickets atomically; Rasa's stock one can lose messages when one
    # sender reaches two frontends at once (rasa issue 9213). false: use the stock store.
    atomic: bool = True
    # Several `redis` hosts: the first starts as the primary, the others as its replicas, and a
    # Sentinel beside each promotes a replica when the primary is lost.
    sentinel_port: Port = 26379
    primary_name: Name = "syrcad"  # the Sentinels' name for the primary


def _tracker_type(value: Any) -> str:
    # `type` may be left out: a tracker is Mongo unless it says otherwise.
    found = (
        value.get("type", "mongo") if isinstance(value, dict) else getattr(value, "type", "mongo")
    )
    return str(found)


Tracker = Annotated[
    Annotated[MongoTracker, Tag("mongo")] | Annotated[PostgresTracker, Tag("postgres")],
    Discriminator(_tracker_type),
]


class Stores(Model):
    tracker: Tracker = MongoTracker()
    lock: RedisLock = RedisLock()


class Monitoring(Model):
    """Prometheus scraping both LBs' exporters and probing the stores, with alert rules."""

    prometheus: bool = False
    host: Name | None = None  # where it runs: by default the first `lb` host
    port: Port = 9090  # its web UI and HTTP API, on the host's cluster address
    scrape_interval_s: Annotated[int, Field(ge=1, le=300)] = 5
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 15
    # Alert thresholds: the share of 5xx answers, and how long an LB queue may stay non-empty.
    error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.05
    queue_for_s: Annotated[int, Field(ge=1, le=3600)] = 60


class Cluster(Model):
    """A whole cluster, as hosts.yml describes it."""

    name: Name = "syrcad"
    # compose: syrcad places every container on its host. swarm: Docker Swarm schedules the
    # frontends and action servers over the hosts with their roles, and replaces those of a
    # lost host by itself; stores and LBs stay on their hosts.
    engine: Literal["compose", "swarm"] = "compose"
    deploy_dir: HostPath = "/var/lib/syrcad"
    hosts: Annotated[dict[Name, Host], Field(min_length=1)]
    project: Project
    images: Images = Images()
    services: Services = Services()
    stores: Stores = Stores()
    monitoring: Monitoring = Monitoring()
    # Several bots behind one entry point, each with its own frontends, conversations and lock
    # keys. Without it the cluster runs one bot: project.path with services.frontend.
    bots: dict[BotName, Bot] = {}

    def bot_names(self) -> tuple[str, ...]:
        """Every bot, in file order; ("",) for a cluster of one bot without `bots:`."""
        return tuple(self.bots) or ("",)

    def frontend_of(self, bot: str) -> FrontendService:
        """`bot`'s frontend settings: its own keys over services.frontend."""
        if not bot:
            return self.services.frontend
        return self.services.frontend.model_copy(update=_set(self.bots[bot].frontend))

    def pool_hosts(self, role: Literal["frontend", "action"], bot: str) -> tuple[str, ...]:
        """The hosts a pool of `role` (a bot's, or "" for the shared one) runs on, in file
        order (placement depends on it)."""
        chosen = self.bots[bot].hosts if bot else ()
        return tuple(h for h in self.hosts_with(role) if not chosen or h in chosen)

    def action_pools(self) -> tuple[str, ...]:
        """The action server pools: "" for the shared one (unless every bot has its own), then
        each bot's own, in file order."""
        own = tuple(name for name, bot in self.bots.items() if bot.actions != "shared")
        shared = ("",) if len(own) < len(self.bots) or not self.bots else ()
        return shared + own

    def action_pool_of(self, bot: str) -> str:
        """The pool that runs `bot`'s actions: its own, or "" (the shared one)."""
        return bot if bot and self.bots[bot].actions != "shared" else ""

    def action_of(self, pool: str) -> ActionService:
        """A pool's action settings: a bot's own keys over services.action."""
        actions = self.bots[pool].actions if pool else "shared"
        if isinstance(actions, BotActions):
            own = {key: value for key, value in _set(actions).items() if key != "path"}
            return self.services.action.model_copy(update=own)
        return self.services.action

    def actions_path_of(self, pool: str) -> str:
        """A pool's rasa-sdk actions package on the hosts."""
        actions = self.bots[pool].actions if pool else "shared"
        return actions.path if isinstance(actions, BotActions) else self.project.actions_path()

    def project_of(self, bot: str) -> str:
        """`bot`'s Rasa project folder on the hosts."""
        return (self.bots[bot].path if bot else None) or self.project.path

    def tracker_role(self) -> Literal["mongo", "postgres"] | None:
        """The role (and service) of the tracker store syrcad runs; None for an outside one."""
        tracker = self.stores.tracker
        if isinstance(tracker, MongoTracker):
            return "mongo"
        return "postgres" if tracker.host is None else None

    def mongo_replica_set(self) -> str | None:
        tracker = self.stores.tracker
        return tracker.replica_set if isinstance(tracker, MongoTracker) else None

    def redis_sentinels(self) -> bool:
        """Whether the lock store is replicated, with Sentinels: several hosts run Redis."""
        return len(self.hosts_with("redis")) > 1

    def public_address(self) -> str:
        """Where clients reach the public LB: the virtual address, else the first LB host."""
        vip = self.services.lb.virtual_address
        return str(vip) if vip else str(self.hosts[self.hosts_with("lb")[0]].address)

    def model_server_host(self) -> str | None:
        """Where the model server runs; None when no bot pulls its models."""
        if not any(bot.pull_models for bot in self.bots.values()):
            return None
        default = (self.hosts_with("train") or self.hosts_with("frontend") or (None,))[0]
        return self.services.model_server.host or default

    def monitoring_host(self) -> str | None:
        """Where Prometheus runs; None without `monitoring.prometheus`."""
        if not self.monitoring.prometheus:
            return None
        return self.monitoring.host or next(iter(self.hosts_with("lb")), None)

    def hosts_with(self, role: Role) -> tuple[str, ...]:
        """Names of the hosts carrying `role`, in file order (placement depends on it)."""
        return tuple(name for name, host in self.hosts.items() if role in host.roles)

    def cluster_dir(self) -> str:
        """The cluster's folder on every host; one sub-folder per host inside it."""
        return f"{self.deploy_dir.rstrip('/')}/{self.name}"

    def host_dir(self, host: str) -> str:
        """Where `host`'s rendered files live on it. Named per host, so that hosts sharing a
        filesystem (an NFS-mounted deploy_dir, test hosts on one machine) never collide."""
        return f"{self.cluster_dir()}/{host}"


def _set(overrides: Model) -> dict[str, Any]:
    """The keys `overrides` gives a value (the models themselves, not dumped to dicts)."""
    return {
        key: value
        for key in type(overrides).model_fields
        if (value := getattr(overrides, key)) is not None
    }
