"""The Twilio channel (SMS and WhatsApp): ``client`` builds the REST client, ``send`` delivers one
reply, ``webhook`` reads Twilio's requests, ``poll`` lists inbound texts without a public URL."""
