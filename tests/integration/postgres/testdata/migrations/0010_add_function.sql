-- Quotes, dollar quoting, semicolons, a backslash and @ONLY-looking text survive embedding: @x@ ${y}
CREATE FUNCTION padlock_echo(t text) RETURNS text AS $$
BEGIN
  RETURN t || E'\\' || ';';
END;
$$ LANGUAGE plpgsql;
