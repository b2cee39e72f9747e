import { DecodeError } from '../errors.js';

/**
 * Protobuf wire format, the subset rstrm/1 needs: varints, fixed32, length-delimited fields, and
 * skipping whatever a newer peer adds. Used only by messages.ts.
 */

export const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

export class ProtoWriter {
  private buffer = Buffer.allocUnsafe(128);
  private length = 0;

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  tag(field: number, wireType: WireType): this {
    return this.varint(field * 8 + wireType);
  }

  /** A non-negative integer below 2^53, or a negative int32 (ten-byte two's complement form). */
  varint(value: number): this {
    if (value < 0) return this.negativeVarint(value);
    this.ensure(10);
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.length++] = value;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.varint(value.length);
    this.ensure(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  /** proto3 implicit presence: zero is not written. */
  uint(field: number, value: number | undefined): this {
    return value ? this.tag(field, WireType.Varint).varint(value) : this;
  }

  /** proto3 implicit presence: the empty string is not written. */
  string(field: number, value: string | undefined): this {
    return value ? this.tag(field, WireType.LengthDelimited).bytes(Buffer.from(value, 'utf8')) : this;
  }

  fixed32(field: number, value: number): this {
    this.tag(field, WireType.Fixed32);
    this.ensure(4);
    this.buffer.writeUInt32LE(value >>> 0, this.length);
    this.length += 4;
    return this;
  }

  rawBytes(field: number, value: Uint8Array): this {
    return this.tag(field, WireType.LengthDelimited).bytes(value);
  }

  /** An embedded message; written even when empty, so its presence survives. */
  message(field: number, write: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    write(inner);
    return this.rawBytes(field, inner.finish());
  }

  /** google.protobuf.StringValue: absent when undefined, present (possibly "") otherwise. */
  stringValue(field: number, value: string | undefined): this {
    return value === undefined ? this : this.message(field, (w) => w.string(1, value));
  }

  boolValue(field: number, value: boolean | undefined): this {
    return value === undefined ? this : this.message(field, (w) => w.uint(1, value ? 1 : 0));
  }

  uint32Value(field: number, value: number | undefined): this {
    return value === undefined ? this : this.message(field, (w) => w.uint(1, value));
  }

  private negativeVarint(value: number): this {
    const bits = BigInt.asUintN(64, BigInt(value));
    this.ensure(10);
    let rest = bits;
    for (let i = 0; i < 9; i++) {
      this.buffer[this.length++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    this.buffer[this.length++] = Number(rest);
    return this;
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/**
 * The largest doubles inside uint64 and int64. 2^64 − 1 and 2^63 − 1 round up to 2^64 and 2^63, just
 * outside, which would be written back as another integer; these stand in for them.
 */
const LARGEST_UINT64 = 2 ** 64 - 2 ** 11;
const LARGEST_INT64 = 2 ** 63 - 2 ** 10;

export class ProtoReader {
  private position: number;

  constructor(
    private readonly buffer: Buffer,
    start = 0,
    private readonly end = buffer.length,
  ) {
    this.position = start;
  }

  get done(): boolean {
    return this.position >= this.end;
  }

  tag(): { field: number; wireType: number } {
    const key = this.varint();
    return { field: Math.floor(key / 8), wireType: key % 8 };
  }

  /** Up to 64 bits; values past 2^53 lose precision, which no rstrm/1 field needs. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (this.position >= this.end) throw new DecodeError('truncated varint');
      const byte = this.buffer[this.position++]!;
      // The tenth byte holds bit 63 only.
      if (i === 9 && byte > 1) throw new DecodeError('varint longer than 64 bits');
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return Math.min(result, LARGEST_UINT64);
      scale *= 0x80;
    }
  }

  /** An int32 (an enum): the low 32 bits, two's complement, as protobuf reads them. */
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint64()));
  }

  /** An int64 (a timestamp's seconds): negatives are ten-byte two's complement. */
  int64(): number {
    return Math.min(Number(BigInt.asIntN(64, this.varint64())), LARGEST_INT64);
  }

  fixed32(): number {
    if (this.position + 4 > this.end) throw new DecodeError('truncated fixed32');
    const value = this.buffer.readUInt32LE(this.position);
    this.position += 4;
    return value;
  }

  bytes(): Buffer {
    const length = this.varint();
    if (this.position + length > this.end) throw new DecodeError('truncated length-delimited field');
    const value = this.buffer.subarray(this.position, this.position + length);
    this.position += length;
    return value;
  }

  string(): string {
    return this.bytes().toString('utf8');
  }

  /** A reader over the embedded message that follows. */
  message(): ProtoReader {
    const length = this.varint();
    if (this.position + length > this.end) throw new DecodeError('truncated embedded message');
    const reader = new ProtoReader(this.buffer, this.position, this.position + length);
    this.position += length;
    return reader;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.advance(8);
        return;
      case WireType.LengthDelimited:
        this.advance(this.varint());
        return;
      case WireType.Fixed32:
        this.advance(4);
        return;
      default:
        throw new DecodeError(`unsupported wire type ${wireType}`);
    }
  }

  /** Reads every field of this message, handing each to `onField`; unknown fields are skipped. */
  fields(onField: (field: number, wireType: number, reader: this) => boolean): void {
    while (!this.done) {
      const { field, wireType } = this.tag();
      if (field === 0) throw new DecodeError('field number 0');
      if (!onField(field, wireType, this)) this.skip(wireType);
    }
  }

  /** The varint's bits exactly: a double cannot hold the ten-byte form of a small negative number. */
  private varint64(): bigint {
    const start = this.position;
    this.varint();
    let bits = 0n;
    for (let i = start; i < this.position; i++) bits |= BigInt(this.buffer[i]! & 0x7f) << BigInt(7 * (i - start));
    return bits;
  }

  private advance(count: number): void {
    if (this.position + count > this.end) throw new DecodeError('truncated field');
    this.position += count;
  }
}
