package dev.rtml.streams;

import java.io.IOException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * Reads a transaction value in Confluent's wire format: magic byte 0, the schema id as 4
 * big-endian bytes, then the Avro body written with the project's transaction schema.
 *
 * <p>The peer knows one schema (the project's .avsc) and the id the registry gave it; a record
 * with another id was written with another schema and is rejected rather than misread.
 */
final class TransactionReader {
  /** The fields the customer window needs. */
  record Transaction(long id, long customerId, long time, double amount) {}

  /** A value that is not a transaction this reader can decode. */
  static final class Rejected extends Exception {
    Rejected(String message) {
      super(message);
    }
  }

  private final GenericDatumReader<GenericRecord> reader;
  private final int schemaId;
  private BinaryDecoder decoder;
  private GenericRecord reuse;

  TransactionReader(Schema schema, int schemaId) {
    this.reader = new GenericDatumReader<>(schema);
    this.schemaId = schemaId;
  }

  Transaction read(byte[] value) throws Rejected {
    if (value == null || value.length < 5 || value[0] != 0) {
      throw new Rejected("not Avro in the Confluent wire format (magic byte 0)");
    }
    int id = ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16)
        | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
    if (schemaId >= 0 && id != schemaId) {
      throw new Rejected("schema id " + id + " is not the transaction schema's id " + schemaId);
    }
    decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
    try {
      reuse = reader.read(reuse, decoder);
    } catch (IOException | RuntimeException e) {
      throw new Rejected("does not decode: " + e);
    }
    // timestamp-millis is read as a long: no conversion is registered, none is needed.
    double amount = (Double) reuse.get("tx_amount");
    if (!Double.isFinite(amount) || amount < 0) {
      throw new Rejected("tx_amount " + amount + " is not a finite amount >= 0");
    }
    return new Transaction(
        (Long) reuse.get("transaction_id"),
        (Long) reuse.get("customer_id"),
        (Long) reuse.get("tx_datetime"),
        amount);
  }
}
