-- Pruning drops transactions and sent messages past their retention, oldest first.
CREATE INDEX appservice_transactions_by_age ON appservice_transactions (received_at);
CREATE INDEX sent_messages_by_age ON sent_messages (sent_at);
