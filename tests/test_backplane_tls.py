"""Scale-out through brokers that speak TLS: ``rediss://`` to a private redis-server with a TLS port, and
``tls://`` to a private nats-server with TLS required, both with a certificate from a test CA (trustme)
that the nodes trust through ``SSL_CERT_FILE``. A publish crosses nodes; a node that does not trust the
broker's certificate refuses it with an error that names the certificate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

import hyperws

from backplane_nodes import (
    BrokerCertificate,
    PrivateBroker,
    start_nodes,
    stop_nodes,
    subscriptions_settled,
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> BrokerCertificate:
    folder = tmp_path_factory.mktemp("broker-tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    paths = BrokerCertificate(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    issued.cert_chain_pems[0].write_to_path(str(paths.cert))
    issued.private_key_pem.write_to_path(str(paths.key))
    return paths


@pytest.fixture(params=["redis", "nats"])
def broker(
    request: pytest.FixtureRequest, certificates: BrokerCertificate
) -> Iterator[PrivateBroker]:
    if request.param == "redis":
        broker = PrivateBroker.redis(tls=certificates)
    else:
        broker = PrivateBroker.nats(tls=certificates)
    broker.start()
    yield broker
    broker.stop()


async def test_a_publish_crosses_nodes_over_tls(
    broker: PrivateBroker, certificates: BrokerCertificate
) -> None:
    a, b = await start_nodes(broker.url, 2, env={"SSL_CERT_FILE": str(certificates.ca)})
    try:
        publisher, subscriber = await a.client(), await b.client()
        await subscriber.subscribe("news/+")
        await subscriptions_settled(b, 1)
        await publisher.publish("news/1", "over TLS")
        assert await subscriber.take(1) == ["over TLS"]
        assert a.stats()["broker_connected"] and b.stats()["broker_connected"]
    finally:
        await stop_nodes(a, b)


async def test_an_untrusted_broker_certificate_is_refused_by_name(broker: PrivateBroker) -> None:
    server = hyperws.Server(pubsub=broker.url, pubsub_required=True)
    with pytest.raises(ConnectionError, match="invalid peer certificate: UnknownIssuer"):
        await server.listen(0, "127.0.0.1")
