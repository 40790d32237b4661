# Bookinfo's details: a book's details as JSON (Ruby standard library only: a thread per
# connection over TCPServer; no tracing code).
#
# usage: ruby details.rb PORT
require 'socket'

BODY = '{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback",' \
       '"pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890"}'

server = TCPServer.new('127.0.0.1', Integer(ARGV.fetch(0)))
loop do
  Thread.new(server.accept) do |client|
    loop do
      line = client.gets or break
      keep_alive = line.include?('HTTP/1.1')
      while (header = client.gets) && header != "\r\n"
        name, value = header.split(':', 2)
        keep_alive = value.strip.casecmp?('keep-alive') if name.casecmp?('connection')
      end
      client.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
                   "Content-Length: #{BODY.bytesize}\r\n" \
                   "Connection: #{keep_alive ? 'keep-alive' : 'close'}\r\n\r\n#{BODY}")
      break unless keep_alive
    end
  rescue IOError, SystemCallError
    nil
  ensure
    client.close
  end
end
