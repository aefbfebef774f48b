/*
 * A DTLS echo server in the shape of Mbed TLS's programs/ssl/dtls_server.c,
 * the seed's server: one client at a time, a stateless HelloVerifyRequest
 * cookie exchange, then read one message, echo it, send close_notify,
 * reset and wait for the next client. Like the example, it takes the first
 * datagram from any address as the start of a new connection, which is why
 * a late datagram of a closed association makes it fail.
 *
 * Usage: mbedtls_dtls_server <bind-ip> <port> <cert.pem> <key.pem>
 * Port 0 binds any free port. It prints "listening <port>" once bound, then
 * one line per connection attempt:
 * "hvr" (cookie sent), "ok" (echoed and closed) or "fail -0x...."
 * (handshake or read failed, with Mbed TLS's error code).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cookie.h>
#include <mbedtls/timing.h>
#include <mbedtls/x509_crt.h>

#define READ_TIMEOUT_MS 5000

static void fail(const char *what, int ret) {
    printf("fail -0x%04x %s\n", (unsigned int) -ret, what);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s <bind-ip> <port> <cert.pem> <key.pem>\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    mbedtls_net_context listen_fd, client_fd;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context ctr_drbg;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert;
    mbedtls_pk_context pkey;
    mbedtls_ssl_cookie_ctx cookie_ctx;
    mbedtls_timing_delay_context timer;
    unsigned char client_ip[16];
    size_t cliip_len;
    unsigned char buf[2048];
    int ret;

    mbedtls_net_init(&listen_fd);
    mbedtls_net_init(&client_fd);
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_cookie_init(&cookie_ctx);
    mbedtls_x509_crt_init(&cert);
    mbedtls_pk_init(&pkey);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&ctr_drbg);

    if ((ret = mbedtls_ctr_drbg_seed(&ctr_drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
        (ret = mbedtls_x509_crt_parse_file(&cert, argv[3])) != 0 ||
        (ret = mbedtls_pk_parse_keyfile(&pkey, argv[4], NULL)) != 0 ||
        (ret = mbedtls_net_bind(&listen_fd, argv[1], argv[2], MBEDTLS_NET_PROTO_UDP)) != 0 ||
        (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_DATAGRAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        fprintf(stderr, "setup failed: -0x%04x\n", (unsigned int) -ret);
        return 1;
    }
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &ctr_drbg);
    mbedtls_ssl_conf_read_timeout(&conf, READ_TIMEOUT_MS);
    if ((ret = mbedtls_ssl_conf_own_cert(&conf, &cert, &pkey)) != 0 ||
        (ret = mbedtls_ssl_cookie_setup(&cookie_ctx, mbedtls_ctr_drbg_random, &ctr_drbg)) != 0) {
        fprintf(stderr, "setup failed: -0x%04x\n", (unsigned int) -ret);
        return 1;
    }
    mbedtls_ssl_conf_dtls_cookies(&conf, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check, &cookie_ctx);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0) {
        fprintf(stderr, "setup failed: -0x%04x\n", (unsigned int) -ret);
        return 1;
    }
    mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);
    struct sockaddr_storage bound;
    socklen_t boundlen = sizeof(bound);
    if (getsockname(listen_fd.fd, (struct sockaddr *) &bound, &boundlen) != 0) {
        perror("getsockname");
        return 1;
    }
    int port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *) &bound)->sin6_port)
                                           : ntohs(((struct sockaddr_in *) &bound)->sin_port);
    printf("listening %d\n", port);

    for (;;) {
        mbedtls_net_free(&client_fd);
        mbedtls_ssl_session_reset(&ssl);
        if ((ret = mbedtls_net_accept(&listen_fd, &client_fd, client_ip, sizeof(client_ip), &cliip_len)) != 0) {
            fail("accept", ret);
            continue;
        }
        {
            /* The client's address as the server sees it: a relay in
             * front hides it, strayguard does not. */
            struct sockaddr_in peer;
            socklen_t peer_len = sizeof(peer);
            char ip[INET_ADDRSTRLEN];
            if (getpeername(client_fd.fd, (struct sockaddr *) &peer, &peer_len) == 0 && peer.sin_family == AF_INET) {
                printf("client %s:%d\n", inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip)), ntohs(peer.sin_port));
            }
        }
        if ((ret = mbedtls_ssl_set_client_transport_id(&ssl, client_ip, cliip_len)) != 0) {
            fail("transport id", ret);
            continue;
        }
        mbedtls_ssl_set_bio(&ssl, &client_fd, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
        do {
            ret = mbedtls_ssl_handshake(&ssl);
        } while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (ret == MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED) {
            printf("hvr\n");
            continue;
        }
        if (ret != 0) {
            fail("handshake", ret);
            continue;
        }
        do {
            ret = mbedtls_ssl_read(&ssl, buf, sizeof(buf) - 1);
        } while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (ret <= 0) {
            fail("read", ret);
            continue;
        }
        int len = ret;
        do {
            ret = mbedtls_ssl_write(&ssl, buf, len);
        } while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (ret < 0) {
            fail("write", ret);
            continue;
        }
        do {
            ret = mbedtls_ssl_close_notify(&ssl);
        } while (ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        printf("ok\n");
    }
}
