package udprelay_test

import (
	"fmt"
	"log"
	"net"

	"github.com/straydtls/straydtls/udprelay"
)

// Hold a client's alert (its close_notify) back, then deliver it late: the
// order a slow network produces now and then, made certain.
func ExampleRecorder() {
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	r, err := udprelay.New(server.LocalAddr().(*net.UDPAddr).AddrPort(), rec.Hook)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	client, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	closeNotify := []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 0xaa, 0xbb}
	appData := []byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 8, 0, 1, 0xcc}
	client.Write(closeNotify) // held
	client.Write(appData)     // forwarded
	r.Flush()
	fmt.Println("held:", r.Held())
	r.Release()

	buf := make([]byte, 64)
	for range 2 {
		n, _, _ := server.ReadFromUDPAddrPort(buf)
		fmt.Printf("server got content type %d\n", buf[:n][0])
	}
	// Output:
	// held: 1
	// server got content type 23
	// server got content type 21
}
