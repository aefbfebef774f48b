package record_test

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	dtlsv2 "github.com/pion/dtls/v2/pkg/protocol/recordlayer"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"

	"github.com/straydtls/straydtls/record"
)

func TestInspectCapturedRecords(t *testing.T) {
	var multiRecord, laterFragment, cid, unified, opens int
	for _, rf := range loadRecords(t) {
		t.Run(rf.Name, func(t *testing.T) {
			r := record.Inspect(rf.Data)
			if got, want := r.Class.String(), rf.Expect["class"]; got != want {
				t.Fatalf("class = %s, want %s (record %+v)", got, want, r)
			}
			if got, want := strconv.FormatBool(r.OpensAssociation()), rf.Expect["opens"]; got != want {
				t.Errorf("OpensAssociation = %s, want %s", got, want)
			}
			if r.Class != record.ClassMalformed {
				if got, want := strconv.Itoa(int(r.Epoch)), rf.Expect["epoch"]; got != want {
					t.Errorf("epoch = %s, want %s", got, want)
				}
			}
			if want, ok := rf.Expect["msgtype"]; ok && strconv.Itoa(int(r.MsgType)) != want {
				t.Errorf("msg_type = %d, want %s", r.MsgType, want)
			}
			if want, ok := rf.Expect["fragoff"]; ok && strconv.Itoa(int(r.FragmentOffset)) != want {
				t.Errorf("fragment_offset = %d, want %s", r.FragmentOffset, want)
			}
		})
		if recs, err := recordlayer.UnpackDatagram(rf.Data); err == nil && len(recs) > 1 {
			multiRecord++
		}
		if rf.Expect["opens"] == "true" && rf.Expect["fragoff"] != "0" {
			laterFragment++
		}
		switch rf.Expect["class"] {
		case "connection-id":
			cid++
		case "dtls13-ciphertext":
			unified++
		}
		if rf.Expect["opens"] == "true" {
			opens++
		}
	}
	// The corpus must keep covering the cases the inspection exists for.
	for what, n := range map[string]int{
		"multi-record datagrams": multiRecord, "non-first ClientHello fragments": laterFragment,
		"tls12_cid records": cid, "unified headers": unified, "ClientHellos": opens,
	} {
		if n == 0 {
			t.Errorf("testdata/records has no %s", what)
		}
	}
}

func TestInspectAgreesWithPionOnCapturedRecords(t *testing.T) {
	for _, rf := range loadRecords(t) {
		checkAgainstPion(t, rf.Data)
	}
}

// checkAgainstPion compares Inspect with pion's record-layer parser (v2, the
// one the project was asked about) on DTLSPlaintext input.
func checkAgainstPion(t *testing.T, data []byte) {
	t.Helper()
	r := record.Inspect(data)
	var h dtlsv2.Header
	pionErr := h.Unmarshal(data)
	plaintext := len(data) > 0 && data[0] >= 20 && data[0] <= 31 && data[0] != record.ContentTypeConnectionID
	if !plaintext {
		return
	}
	if pionErr == nil && r.Class != record.ClassMalformed {
		if uint8(h.ContentType) != r.Type || h.Epoch != r.Epoch || h.SequenceNumber != r.Seq ||
			uint16(h.Version.Major)<<8|uint16(h.Version.Minor) != r.Version {
			t.Fatalf("% x: pion reads %+v, Inspect reads %+v", data, h, r)
		}
	}
	validVersion := len(data) >= 3 && data[1] == 0xfe && (data[2] == 0xff || data[2] == 0xfd)
	if r.Class != record.ClassMalformed && validVersion && pionErr != nil {
		t.Fatalf("% x: Inspect reads a record (%v) where pion fails: %v", data, r.Class, pionErr)
	}
	if pionErr == nil && validVersion && r.Class == record.ClassMalformed && !malformedPastHeader(data) {
		t.Fatalf("% x: pion reads the record header (%+v) that Inspect calls malformed", data, h)
	}
	if r.Class == record.ClassMalformed || r.Class == record.ClassNotDTLS {
		return
	}
	// A well-formed record is one pion can cut out of the datagram, and an
	// epoch-0 handshake header reads the same to both.
	recLen := 13 + int(binary.BigEndian.Uint16(data[11:13]))
	if recLen > len(data) {
		t.Fatalf("% x: Inspect accepted a record whose length runs past the datagram", data)
	}
	if r.HasHandshakeHeader {
		var hh handshake.Header
		if err := hh.Unmarshal(data[13:recLen]); err != nil {
			t.Fatalf("% x: pion cannot read the handshake header Inspect read: %v", data, err)
		}
		if uint8(hh.Type) != r.MsgType || hh.FragmentOffset != r.FragmentOffset ||
			hh.FragmentLength != r.FragmentLength || hh.Length != r.MessageLength || hh.MessageSequence != r.MessageSeq {
			t.Fatalf("% x: pion reads handshake header %+v, Inspect %+v", data, hh, r)
		}
	}
	if r.OpensAssociation() && (data[0] != 22 || r.Epoch != 0 || data[13] != 1) {
		t.Fatalf("% x: opens an association without being an epoch-0 ClientHello", data)
	}
	// CarriesApplicationTraffic stops at content types it does not know
	// (ClassOther); for the rest a DTLS 1.2 record at epoch ≥ 1 decides.
	if r.Protected() && r.Class != record.ClassMalformed && r.Class != record.ClassOther && r.Class != record.ClassCiphertext &&
		!record.CarriesApplicationTraffic(data) {
		t.Fatalf("% x: the first record is protected (%v, epoch %d) but CarriesApplicationTraffic says no", data, r.Class, r.Epoch)
	}
	if r.OpensAssociation() && !r.ClearText() {
		t.Fatalf("% x: a record that is not clear text opens an association", data)
	}

	random, ok := clientRandom(data)
	if ok != (r.OpensAssociation() && r.FragmentOffset == 0 && r.FragmentLength >= 34) {
		t.Fatalf("% x: ClientRandom ok=%v for %+v", data, ok, r)
	}
	if ok && r.FragmentLength == r.MessageLength {
		// A whole ClientHello: its random is the one pion reads.
		var ch handshake.MessageClientHello
		if err := ch.Unmarshal(data[13+12 : 13+12+int(r.FragmentLength)]); err == nil && ch.Random.MarshalFixed() != random {
			t.Fatalf("% x: pion reads random %x, ClientRandom %x", data, ch.Random.MarshalFixed(), random)
		}
	}
}

// TestClientRandom: the ClientHello that answers a HelloVerifyRequest has
// the random of the first, as RFC 6347 §4.2.1 requires, in every captured
// handshake; a fragment without the random, or anything else, has none.
func TestClientRandom(t *testing.T) {
	files := map[string][]byte{}
	for _, rf := range loadRecords(t) {
		files[rf.Name] = rf.Data
	}
	for _, pair := range [][2]string{
		{"openssl-s_client-00-client-ClientHello-frag0.hex", "openssl-s_client-02-client-ClientHello-frag0.hex"},
		{"pion-v2-00-client-ClientHello-frag0.hex", "pion-v2-02-client-ClientHello-frag0.hex"},
		{"pion-v2-mtu60-00-client-ClientHello-frag0.hex", "pion-v2-mtu60-03-client-ClientHello-frag0.hex"},
		{"pion-v3-cid-00-client-ClientHello-frag0.hex", "pion-v3-cid-02-client-ClientHello-frag0.hex"},
	} {
		first, ok1 := clientRandom(files[pair[0]])
		second, ok2 := clientRandom(files[pair[1]])
		if !ok1 || !ok2 || first != second {
			t.Errorf("%s and %s: randoms %x (%v) and %x (%v); want the same", pair[0], pair[1], first, ok1, second, ok2)
		}
	}
	a, _ := clientRandom(files["pion-v2-00-client-ClientHello-frag0.hex"])
	b, _ := clientRandom(files["pion-v3-cid-00-client-ClientHello-frag0.hex"])
	if a == b {
		t.Error("two handshakes drew the same random")
	}
	for _, name := range []string{
		"pion-v2-mtu60-01-client-ClientHello-frag60.hex",
		"pion-v2-01-server-HelloVerifyRequest-frag0.hex",
		"pion-v2-06-client-application-data-epoch1.hex",
	} {
		if r, ok := clientRandom(files[name]); ok {
			t.Errorf("%s: ClientRandom = %x, true; want none", name, r)
		}
	}
}

func FuzzInspect(f *testing.F) {
	for _, rf := range loadRecords(f) {
		f.Add(rf.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		checkAgainstPion(t, data)
		checkClearText(t, data)
		checkHellosAgainstPion(t, data)
		checkEpoch0AgainstPion(t, data)
		checkConnectionID(t, data)
		checkV4(t, data)
		record.CarriesClosingAlert(data)
		record.CarriesApplicationTraffic(data)
		clientRandom(data)
		if !bytes.Equal(orig, data) {
			t.Fatal("inspection modified its input")
		}
	})
}

// checkConnectionID: ConnectionID, which skips Inspect, takes exactly the
// records Inspect classes tls12_cid, long enough to hold the CID and a
// length field.
func checkConnectionID(t *testing.T, data []byte) {
	t.Helper()
	if len(data) > 0 && data[0]&0xe0 == 0x20 {
		return // a unified header: checkV4 reads it with pion v4
	}
	for _, n := range []int{1, 8} {
		cid, ok := record.ConnectionID(data, n)
		want := record.Inspect(data).Class == record.ClassConnectionID && len(data) >= 11+n+2
		if ok != want || ok && !bytes.Equal(cid, data[11:11+n]) {
			t.Fatalf("% x: ConnectionID(%d) = %x, %v; Inspect says %v", data, n, cid, ok, want)
		}
	}
}

// checkClearText reads the bytes Record.ClearText depends on by hand:
// another protocol's datagram, a unified header or tls12_cid record, and a
// DTLSPlaintext header naming an epoch other than 0 are never clear text.
func checkClearText(t *testing.T, data []byte) {
	t.Helper()
	r := record.Inspect(data)
	if !r.ClearText() || len(data) == 0 {
		return
	}
	b0 := data[0]
	if b0 < 20 || b0 > 63 {
		t.Fatalf("% x: another protocol's datagram taken as clear text", data)
	}
	if r.Class == record.ClassCiphertext || r.Class == record.ClassConnectionID {
		t.Fatalf("% x: a %v record taken as clear text", data, r.Class)
	}
	if len(data) >= 13 && b0&0xe0 != 0x20 && binary.BigEndian.Uint16(data[3:5]) != 0 {
		t.Fatalf("% x: a record at epoch %d taken as clear text", data, binary.BigEndian.Uint16(data[3:5]))
	}
}

func TestCarriesClosingAlert(t *testing.T) {
	files := map[string][]byte{}
	for _, rf := range loadRecords(t) {
		files[rf.Name] = rf.Data
	}
	alert := files["pion-v2-08-client-alert-epoch1.hex"]
	appData := files["pion-v2-06-client-application-data-epoch1.hex"]
	if alert == nil || appData == nil {
		t.Fatal("captured records missing; re-run TestCapture")
	}
	plainAlert := func(level, desc byte) []byte {
		return []byte{21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, level, desc}
	}
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"encrypted alert at epoch 1", alert, true},
		{"application data", appData, false},
		{"ClientHello", files["pion-v2-00-client-ClientHello-frag0.hex"], false},
		{"flight with CCS and Finished", files["pion-v2-05-server-change-cipher-spec-epoch0.hex"], false},
		{"alert behind application data", append(bytes.Clone(appData), alert...), true},
		{"plaintext fatal alert", plainAlert(2, 40), true},
		{"plaintext close_notify", plainAlert(1, 0), true},
		{"plaintext warning that does not close", plainAlert(1, 90), false},
		{"plaintext alert cut short", plainAlert(2, 40)[:14], false},
		{"alert behind a tls12_cid record", append(bytes.Clone(files["pion-v3-cid-06-client-connection-id-epoch1.hex"]), alert...), false},
		{"alert with a foreign version", append([]byte{21, 3, 3}, alert[3:]...), false},
		{"truncated alert header", alert[:12], false},
		{"empty", nil, false},
		{"STUN", files["synthetic-stun-binding-request.hex"], false},
	} {
		if got := record.CarriesClosingAlert(tc.data); got != tc.want {
			t.Errorf("%s: CarriesClosingAlert = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCarriesApplicationTraffic(t *testing.T) {
	files := recordsByName(t)
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"pion-v2-00-client-ClientHello-frag0.hex", false},
		{"pion-v2-05-server-change-cipher-spec-epoch0.hex", true}, // CCS, then the epoch-1 Finished
		{"pion-v2-06-client-application-data-epoch1.hex", true},
		{"pion-v3-cid-06-client-connection-id-epoch1.hex", true},
		{"synthetic-dtls13-unified-long.hex", true},
		// DTLS 1.3: the server's epoch-2 flight goes before the client's
		// Finished; epoch 3 after it.
		{"pion-v4-dtls13-04-server-ServerHello-frag0.hex", false},
		{"pion-v4-dtls13-05-server-dtls13-ciphertext-epoch2.hex", false},
		{"pion-v4-dtls13-cid-05-server-ServerHello-frag1175.hex", false}, // the ServerHello's end, then epoch 2
		{"pion-v4-dtls13-08-server-dtls13-ciphertext-epoch3.hex", true},
		{"pion-v4-dtls12-05-server-change-cipher-spec-epoch0.hex", true},
	} {
		data := files[tc.name]
		if data == nil {
			t.Fatalf("%s missing; re-run TestCapture", tc.name)
		}
		if got := record.CarriesApplicationTraffic(data); got != tc.want {
			t.Errorf("%s: CarriesApplicationTraffic = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, d := range [][]byte{nil, {0x16, 0xfe}, []byte("not dtls"), {0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 9}} {
		if record.CarriesApplicationTraffic(d) {
			t.Errorf("%x: application traffic, want none (too short or truncated)", d)
		}
	}
}

func TestInspectDoesNotAllocate(t *testing.T) {
	data := loadRecords(t)[0].Data
	if n := testing.AllocsPerRun(100, func() {
		record.Inspect(data)
		record.CarriesClosingAlert(data)
		record.CarriesApplicationTraffic(data)
	}); n != 0 {
		t.Fatalf("Inspect allocates %v times per call", n)
	}
}

func clientRandom(d []byte) ([32]byte, bool) {
	ch, ok := clientHello(d)
	return ch.Random, ok
}

// malformedPastHeader reports whether a datagram whose record header pion
// reads is malformed for a reason Inspect checks beyond that header: a
// record length that runs past the datagram, an epoch-0 tls12_cid record,
// or an epoch-0 handshake record whose handshake header pion cannot read
// or whose fragment lies outside the record or the message, or an epoch-0
// ACK whose record_numbers are not whole.
func malformedPastHeader(data []byte) bool {
	epoch := binary.BigEndian.Uint16(data[3:5])
	if data[0] == record.ContentTypeConnectionID {
		return epoch == 0
	}
	recLen := 13 + int(binary.BigEndian.Uint16(data[11:13]))
	if recLen > len(data) {
		return true
	}
	if data[0] == record.ContentTypeACK && epoch == 0 {
		// An ACK in the clear whose record_numbers no stack reads.
		body := data[13:recLen]
		return len(body) < 2 || int(binary.BigEndian.Uint16(body)) != len(body)-2 || (len(body)-2)%16 != 0
	}
	if data[0] != record.ContentTypeHandshake || epoch != 0 {
		return false
	}
	var hh handshake.Header
	if err := hh.Unmarshal(data[13:recLen]); err != nil {
		return true
	}
	return int(hh.FragmentLength) > recLen-13-12 || uint64(hh.FragmentOffset)+uint64(hh.FragmentLength) > uint64(hh.Length)
}

// checkEpoch0AgainstPion splits the datagram as pion v3 does for each CID
// length its listeners use: wherever pion can split it, Epoch0Types must
// name exactly the content types of its epoch-0 records, the ones pion
// would act on.
func checkEpoch0AgainstPion(t *testing.T, data []byte) {
	t.Helper()
	for _, cidLen := range []int{0, 1, 8} {
		pkts, err := recordlayer.ContentAwareUnpackDatagram(data, cidLen)
		if err != nil || len(data) == 0 {
			continue
		}
		var want record.TypeSet
		complete := true
		for _, pkt := range pkts {
			h := recordlayer.Header{}
			if pkt[0] == record.ContentTypeConnectionID {
				h.ConnectionID = make([]byte, cidLen)
			}
			if pkt[0] < 20 || pkt[0] >= 32 || pkt[1] != 0xfe {
				complete = false // pion drops the record; Epoch0Types stops there
				break
			}
			if h.Unmarshal(pkt) == nil && h.Epoch == 0 {
				want |= record.Types(pkt[0])
			} else if h.Epoch == 0 && binary.BigEndian.Uint16(pkt[3:5]) == 0 {
				want |= record.Types(pkt[0]) // a version pion refuses: still named
			}
		}
		got := record.Epoch0Types(data, cidLen)
		if complete && got != want || !complete && got&^want != 0 {
			t.Fatalf("% x with %d-byte CIDs: Epoch0Types %016b, pion's epoch-0 records %016b", data, cidLen, got, want)
		}
	}
}

func TestEpoch0Types(t *testing.T) {
	rec := func(ct byte, epoch uint16, body ...byte) []byte {
		b := []byte{ct, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, 0, byte(len(body))}
		return append(b, body...)
	}
	cidRec := func(epoch uint16, cid []byte, body ...byte) []byte {
		b := []byte{25, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1}
		b = append(b, cid...)
		return append(append(b, 0, byte(len(body))), body...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	cid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, c := range []struct {
		name   string
		d      []byte
		cidLen int
		want   record.TypeSet
	}{
		{"empty", nil, 0, 0},
		{"epoch-1 application data", rec(23, 1, 1, 2, 3), 0, 0},
		{"epoch-0 heartbeat", rec(24, 0, 1), 0, record.Types(24)},
		{"epoch-0 heartbeat behind an epoch-1 record", cat(rec(23, 1, 9, 9), rec(24, 0, 1)), 0, record.Types(24)},
		{"flight 5", cat(rec(22, 0, 1), rec(20, 0, 1), rec(22, 1, 7)), 0, record.Types(22, 20)},
		{"epoch-0 alert behind a CID record", cat(cidRec(1, cid, 7, 7), rec(21, 0, 2, 0)), 8, record.Types(21)},
		{"CID record, length unknown", cat(cidRec(1, cid, 7, 7), rec(21, 0, 2, 0)), record.CIDUnknown, 0},
		{"epoch-0 CID record", cidRec(0, cid, 1), 8, record.Types(25)},
		{"unassigned type 27", rec(27, 0), 0, record.Types(27)},
		{"unified header stops the walk", cat([]byte{0x2c, 0, 0, 0, 2, 1, 1}, rec(21, 0, 2, 0)), 0, 0},
		{"record past the datagram", rec(21, 0, 2, 0)[:14], 0, 0},
		{"STUN", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 0, 0},
	} {
		if got := record.Epoch0Types(c.d, c.cidLen); got != c.want {
			t.Errorf("%s: Epoch0Types %016b, want %016b", c.name, got, c.want)
		}
		checkEpoch0AgainstPion(t, c.d)
	}
	if record.Types(24).Has(23) || !record.Types(24, 23).Has(23) || record.Types(19, 32).Has(19) {
		t.Error("TypeSet.Has disagrees with Types")
	}
}
