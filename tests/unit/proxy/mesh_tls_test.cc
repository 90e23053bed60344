// io::Stream over real loopback sockets with the proxy's mesh TLS contexts:
// certificates from the CA, identities checked both ways, ALPN, half-close,
// resumption, and a stranger refused.
#include <gtest/gtest.h>

#include "identity/ca.h"
#include "io/asio.h"
#include "io/stream.h"
#include "proxy/tls.h"

namespace weft::proxy {
namespace {

struct Mesh {
  identity::KeyPair root;
  std::unique_ptr<identity::Authority> ca;
  explicit Mesh(const std::string& td = "weft.local") {
    root = identity::NewRoot(td).value();
    ca = identity::Authority::Load(root.cert_pem, root.key_pem, td).value();
  }
  MeshIdentity Identity(const std::string& service) {
    MeshIdentity id;
    id.trust_domain = ca->trust_domain();
    id.spiffe_id = identity::SpiffeId(id.trust_domain, "default", service).value();
    id.key_pem = identity::NewKey().value();
    id.cert_chain_pem =
        ca->Sign(identity::NewCsr(id.key_pem, id.spiffe_id).value(), id.spiffe_id, 3600).value();
    id.roots_pem = {root.cert_pem};
    return id;
  }
};

struct Result {
  asio::error_code client_ec, server_ec;
  std::string client_saw_peer, server_saw_peer, alpn, reply;
  bool resumed = false;
  bool eof_after_reply = false;
};

// One connection: the server echoes "pong" to "ping" and half-closes.
Result Exchange(asio::io_context& io, TlsContexts& server, TlsContexts& client) {
  Result res;
  io::tcp::acceptor acc(io, io::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto ep = acc.local_endpoint();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [ec, sock] = co_await acc.async_accept(kNoThrow);
        if (ec) co_return;
        io::Stream s(std::move(sock));
        s.AttachTls(server.NewServer(kAlpnHttp1));
        res.server_ec = co_await s.Handshake();
        if (res.server_ec) co_return;
        res.server_saw_peer = PeerSpiffeId(s.ssl());
        char buf[16];
        auto [rec, n] = co_await s.ReadSome(buf, sizeof(buf));
        if (rec || std::string_view(buf, n) != "ping") co_return;
        co_await s.Write("pong", 4);
        s.ShutdownSend();
        auto [eec, en] = co_await s.ReadSome(buf, sizeof(buf));  // the client's close_notify
        (void)en;
        s.Close();
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        io::Stream s(io);
        auto [ec] = co_await s.socket().async_connect(ep, kNoThrow);
        if (ec) co_return;
        s.AttachTls(client.NewClient("peer", kAlpnHttp1));
        res.client_ec = co_await s.Handshake();
        if (res.client_ec) co_return;
        res.client_saw_peer = PeerSpiffeId(s.ssl());
        res.alpn = std::string(NegotiatedAlpn(s.ssl()));
        co_await s.Write("ping", 4);
        char buf[16];
        auto [rec, n] = co_await s.ReadSome(buf, sizeof(buf));
        if (!rec) res.reply.assign(buf, n);
        auto [eec, en] = co_await s.ReadSome(buf, sizeof(buf));
        res.eof_after_reply = eec == asio::error::eof;
        res.resumed = SSL_session_reused(s.ssl()) == 1;
        s.ShutdownSend();
        s.Close();
      },
      asio::detached);
  io.restart();
  io.run();
  return res;
}

TEST(MeshTls, MutualAuthenticationIdentitiesAlpnHalfCloseAndResumption) {
  Mesh mesh;
  auto keys = TicketKeys::Random();
  std::string err;
  auto server = TlsContexts::Build(mesh.Identity("reviews"), keys, &err);
  ASSERT_TRUE(server) << err;
  auto client = TlsContexts::Build(mesh.Identity("web"), keys, &err);
  ASSERT_TRUE(client) << err;
  asio::io_context io;
  Result first = Exchange(io, *server, *client);
  ASSERT_FALSE(first.client_ec) << first.client_ec.message();
  ASSERT_FALSE(first.server_ec) << first.server_ec.message();
  EXPECT_EQ(first.client_saw_peer, "spiffe://weft.local/ns/default/sa/reviews");
  EXPECT_EQ(first.server_saw_peer, "spiffe://weft.local/ns/default/sa/web");
  EXPECT_EQ(first.alpn, "http/1.1");
  EXPECT_EQ(first.reply, "pong");
  EXPECT_TRUE(first.eof_after_reply);
  EXPECT_FALSE(first.resumed);
  // The ticket from the first connection resumes the second; the peer's
  // identity is still known.
  Result second = Exchange(io, *server, *client);
  ASSERT_FALSE(second.client_ec) << second.client_ec.message();
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(second.client_saw_peer, "spiffe://weft.local/ns/default/sa/reviews");
  EXPECT_EQ(second.server_saw_peer, "spiffe://weft.local/ns/default/sa/web");
  // Another worker of the same proxy (same ticket keys) resumes it too.
  auto server2 = TlsContexts::Build(mesh.Identity("reviews"), keys, &err);
  Result third = Exchange(io, *server2, *client);
  EXPECT_TRUE(third.resumed);
}

TEST(MeshTls, ACertificateFromAnotherCaIsRefused) {
  Mesh mesh, other;
  auto keys = TicketKeys::Random();
  std::string err;
  auto server = TlsContexts::Build(mesh.Identity("reviews"), keys, &err);
  auto stranger = TlsContexts::Build(other.Identity("web"), keys, &err);
  ASSERT_TRUE(server && stranger) << err;
  asio::io_context io;
  Result r = Exchange(io, *server, *stranger);
  EXPECT_TRUE(r.client_ec || r.server_ec);
  EXPECT_TRUE(r.server_ec) << "the server accepted a stranger";
  EXPECT_EQ(r.reply, "");
}

TEST(MeshTls, BadMaterialIsRefusedWithAReason) {
  Mesh mesh;
  MeshIdentity id = mesh.Identity("web");
  id.key_pem = identity::NewKey().value();  // not the certificate's key
  std::string err;
  EXPECT_FALSE(TlsContexts::Build(id, TicketKeys::Random(), &err));
  EXPECT_NE(err.find("workload key"), std::string::npos) << err;
  id = mesh.Identity("web");
  id.roots_pem = {"not a certificate"};
  EXPECT_FALSE(TlsContexts::Build(id, TicketKeys::Random(), &err));
  EXPECT_NE(err.find("trust bundle"), std::string::npos) << err;
}

}  // namespace
}  // namespace weft::proxy
