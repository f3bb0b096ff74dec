package dsn_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"relaymail/internal/dsn"
)

// zeros is a Rand that makes the Message-ID and boundary predictable.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// The smarthost refused a recipient of a message PHP sent: bounce it to
// the envelope sender.
func ExampleWrite() {
	now := time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC)
	original := strings.NewReader("Received: from www-data by relay.example.org (relaymail);\r\n" +
		"\tTue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"To: bob@example.com\r\n" +
		"Subject: Your order\r\n" +
		"From: shop@example.org\r\n" +
		"Date: Tue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"Message-ID: <abc@example.org>\r\n" +
		"\r\n" +
		"Thank you for your order.\r\n")
	recips := []dsn.Recipient{{
		Addr:        "bob@example.com",
		ORcpt:       "Bob@Example.COM",
		Action:      "failed",
		Status:      "5.1.1",
		Code:        550,
		Reply:       "<bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		RemoteMTA:   "smtp.example.com",
		LastAttempt: now,
	}}
	var out bytes.Buffer
	res, err := dsn.Write(&out, original, recips, dsn.Options{
		ReportingMTA: "relay.example.org",
		From:         "MAILER-DAEMON@relay.example.org",
		To:           "shop@example.org",
		Arrival:      time.Date(2023, 12, 28, 9, 30, 0, 0, time.FixedZone("", 3600)),
		Now:          func() time.Time { return now },
		Rand:         zeros{},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n\n", res)
	fmt.Print(strings.ReplaceAll(out.String(), "\r\n", "\n"))
	// Output:
	// {EightBit:false MessageID:20240102150405.aaaaaaaaaaaaaaaaaaaa@relay.example.org Size:2172}
	//
	// From: Mail Delivery System <MAILER-DAEMON@relay.example.org>
	// To: <shop@example.org>
	// Subject: Undelivered Mail Returned to Sender
	// Date: Tue, 02 Jan 2024 15:04:05 +0000
	// Message-ID: <20240102150405.aaaaaaaaaaaaaaaaaaaa@relay.example.org>
	// MIME-Version: 1.0
	// Auto-Submitted: auto-replied
	// Content-Type: multipart/report; report-type=delivery-status;
	//  boundary="bounce.aaaaaaaaaaaaaaaaaaaaaaaa"
	//
	// This is a MIME-encapsulated message.
	//
	// --bounce.aaaaaaaaaaaaaaaaaaaaaaaa
	// Content-Description: Notification
	// Content-Type: text/plain; charset=utf-8
	// Content-Transfer-Encoding: 7bit
	//
	// This is the mail system at relay.example.org.
	//
	// Your message could not be delivered to the recipient below. This is a
	// permanent error: the mail system has given up and will not try again.
	//
	//   bob@example.com
	//     The mail server smtp.example.com replied:
	//       550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in
	//       virtual mailbox table
	//     The address does not exist. Check it for typing mistakes, then send your
	//     message again.
	//
	// Your message was sent on Thu, 28 Dec 2023 09:30:00 +0100. Its header is
	// attached below, to show which message this was.
	//
	// If you need help, forward this whole message to your mail administrator.
	//
	// --bounce.aaaaaaaaaaaaaaaaaaaaaaaa
	// Content-Description: Delivery report
	// Content-Type: message/delivery-status
	//
	// Reporting-MTA: dns; relay.example.org
	// Arrival-Date: Thu, 28 Dec 2023 09:30:00 +0100
	//
	// Original-Recipient: rfc822; Bob@Example.COM
	// Final-Recipient: rfc822; bob@example.com
	// Action: failed
	// Status: 5.1.1
	// Remote-MTA: dns; smtp.example.com
	// Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address
	//  rejected: User unknown in virtual mailbox table
	// Last-Attempt-Date: Tue, 02 Jan 2024 15:04:05 +0000
	//
	// --bounce.aaaaaaaaaaaaaaaaaaaaaaaa
	// Content-Description: Undelivered Message Headers
	// Content-Type: text/rfc822-headers
	//
	// Received: from www-data by relay.example.org (relaymail);
	// 	Tue, 02 Jan 2024 14:04:05 +0000
	// To: bob@example.com
	// Subject: Your order
	// From: shop@example.org
	// Date: Tue, 02 Jan 2024 14:04:05 +0000
	// Message-ID: <abc@example.org>
	//
	// --bounce.aaaaaaaaaaaaaaaaaaaaaaaa--
}
